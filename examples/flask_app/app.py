"""The comments example on Flask (docs/flask.md): SQLAlchemy, a login form, a page that
subscribes from the position it was rendered at, publish after commit."""

import os
from pathlib import Path

import click
from flask import Flask, abort, redirect, render_template, request, session, url_for
from sqlalchemy import ForeignKey, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker
from werkzeug.security import check_password_hash, generate_password_hash

from tidings.contrib.flask import Tidings

HERE = Path(__file__).resolve().parent
BANNED = ("spam",)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    author: Mapped[User] = relationship()
    text: Mapped[str] = mapped_column(String(500))

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "author": self.author.name, "text": self.text}


def database_url() -> str:
    url = os.environ.get("DATABASE_URL", f"sqlite:///{HERE / 'comments.sqlite3'}")
    return url.replace("postgresql://", "postgresql+psycopg://", 1)  # psycopg 3


engine = create_engine(database_url())
Session = sessionmaker(engine)

app = Flask(__name__, static_folder=str(HERE.parent / "static"))  # live.js
app.config["SECRET_KEY"] = os.environ.get("FLASK_SECRET_KEY", "change-me-example-only-0123")
# Tidings beside the app: `tidings serve --config tidings.json`; the app signs tokens with the
# keys of the same file and publishes through its HTTP API.
app.config["TIDINGS"] = {
    "CONFIG": os.environ.get("COMMENTS_TIDINGS_CONFIG", str(HERE / "tidings.json")),
    "API_URL": os.environ.get("COMMENTS_TIDINGS_API_URL", "http://127.0.0.1:8000/api"),
}
tidings = Tidings(app)


@tidings.user_loader
def current_user_id() -> int | None:
    return session.get("user_id")


@tidings.subscription_check
def can_subscribe(user_id: int | None, channel: str) -> bool:
    """Everyone logged in reads ``comments``; ``notes:<id>`` is user <id>'s alone."""
    return user_id is not None and channel in ("comments", f"notes:{user_id}")


class Rejected(Exception):
    pass


def moderate(comment: Comment) -> None:
    if any(word in comment.text.lower() for word in BANNED):
        raise Rejected("comment rejected")


@app.get("/health")
def health() -> str:
    return "ok"


@app.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "POST":
        with Session() as db:
            user = db.scalar(select(User).where(User.name == request.form["username"]))
        if user is None or not check_password_hash(user.password_hash, request.form["password"]):
            abort(403)
        session["user_id"] = user.id
        return redirect(url_for("index"))
    return render_template("login.html")


@app.get("/")
def index():
    if current_user_id() is None:
        return redirect(url_for("login"))
    live = tidings.subscribe_context("comments")  # the stream position first...
    with Session() as db:  # ...then the data
        comments = [c.as_json() for c in db.scalars(select(Comment).order_by(Comment.id))]
    return render_template("index.html", comments=comments, live=live)


@app.post("/comments")
def add_comment():
    user_id = current_user_id()
    if user_id is None:
        abort(401)
    text = request.form.get("text", "").strip()
    if not text:
        abort(400)
    try:
        with Session.begin() as db:  # commits at the end of the block, rolls back on error
            comment = Comment(author=db.get(User, user_id), text=text)
            db.add(comment)
            db.flush()  # comment.id
            tidings.publish_on_commit("comments", comment.as_json(), session=db)
            moderate(comment)  # raises: rolled back, nothing is published
    except Rejected as exc:
        return str(exc), 400
    return redirect(url_for("index"), 303)


@app.cli.command("add-users")
@click.option("--password", required=True)
@click.argument("names", nargs=-1)
def add_users(password: str, names: tuple[str, ...]) -> None:
    """Create the tables if needed and add users (``flask add-users --password P alice``)."""
    Base.metadata.create_all(engine)
    with Session.begin() as db:
        db.add_all(User(name=name, password_hash=generate_password_hash(password))
                   for name in names)
