"""Who may subscribe where, and what other clients see of a user (TIDINGS settings)."""


def can_subscribe(user, channel: str) -> bool:
    """Everyone logged in reads ``comments``; ``notes:<id>`` is user <id>'s alone."""
    return channel == "comments" or channel == f"notes:{user.pk}"


def user_info(user) -> dict[str, str]:
    return {"name": user.get_username()}
