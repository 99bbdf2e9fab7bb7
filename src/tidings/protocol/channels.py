"""Channel name rules, namespaces and permissions (PROTOCOL.md §9). Pure functions.

Anatomy: ``[$][namespace:]name[#user1,user2]``. A namespace that is not configured is
``unknown channel`` (102); a bad name is ``bad request`` (107); no permission is 103.
"""

from __future__ import annotations

import re

from tidings.config import ChannelConfig, ChannelOptions
from tidings.errors import ErrorCode, ReplyError
from tidings.protocol import codec

__all__ = ["ChannelRules", "check_data_format"]


def check_data_format(opts: ChannelOptions, data: bytes) -> None:
    """``publication_data_format``: "" rejects empty data, "json_object" anything but an
    object, and data nested deeper than ``codec.MAX_NESTING`` (raises 107). JSON validity itself
    is guaranteed by the JSON codec."""
    if opts.publication_data_format == "binary":
        return
    if not data:
        raise ErrorCode.BAD_REQUEST
    if opts.publication_data_format == "json_object" and not data.lstrip().startswith(b"{"):
        raise ErrorCode.BAD_REQUEST
    if codec.nesting(data) > codec.MAX_NESTING:
        raise ReplyError(107, f"bad request: data nested deeper than {codec.MAX_NESTING} levels")


class ChannelRules:
    """Resolves a channel to its options and answers permission questions."""

    def __init__(self, config: ChannelConfig, *, insecure: bool = False) -> None:
        self.config = config
        self.insecure = insecure
        self._namespaces: dict[str, ChannelOptions] = {ns.name: ns for ns in config.namespaces}
        self._regex: dict[str, re.Pattern[str]] = {
            ns.name: re.compile(ns.channel_regex) for ns in config.namespaces if ns.channel_regex
        }
        if config.without_namespace.channel_regex:
            self._regex[""] = re.compile(config.without_namespace.channel_regex)

    def namespace_of(self, channel: str) -> tuple[str, str]:
        """Return (namespace name, rest of the channel name); namespace "" for none."""
        name = channel
        if self.config.private_prefix and name.startswith(self.config.private_prefix):
            name = name[len(self.config.private_prefix) :]
        boundary = self.config.namespace_boundary
        if boundary and boundary in name:
            ns, rest = name.split(boundary, 1)
            return ns, rest
        return "", name

    def options(self, channel: str) -> ChannelOptions:
        """Options of the channel's namespace, after validating the name.

        Raises ReplyError 107 on a bad name and 102 on an unknown namespace."""
        if not channel or len(channel) > self.config.max_length:
            raise ErrorCode.BAD_REQUEST
        ns, rest = self.namespace_of(channel)
        if ns:
            opts = self._namespaces.get(ns)
            if opts is None:
                raise ErrorCode.UNKNOWN_CHANNEL
        else:
            opts = self.config.without_namespace
        regex = self._regex.get(ns)
        if regex is not None:
            if not regex.fullmatch(rest):
                raise ErrorCode.BAD_REQUEST
        elif not channel.isascii():
            raise ErrorCode.BAD_REQUEST
        return opts

    def is_private(self, channel: str) -> bool:
        prefix = self.config.private_prefix
        return bool(prefix) and channel.startswith(prefix)

    def is_user_limited(self, channel: str, opts: ChannelOptions) -> bool:
        return opts.allow_user_limited_channels and self.config.user_boundary in channel

    def user_allowed(self, channel: str, user: str) -> bool:
        """For a user-limited channel ``name#42,43``: is ``user`` listed?"""
        _, _, users = channel.rpartition(self.config.user_boundary)
        return bool(user) and user in users.split(self.config.user_separator)

    def personal_channel(self, user: str, namespace: str) -> str:
        channel = f"{self.config.user_boundary}{user}"
        if namespace:
            channel = f"{namespace}{self.config.namespace_boundary}{channel}"
        return channel

    # ---------------------------------------------------------------- permissions

    def can_subscribe_without_token(self, channel: str, opts: ChannelOptions, user: str) -> bool:
        """Steps 3-5 of the subscribe permission logic (the token path is separate)."""
        if self.is_private(channel):
            return False
        if self.is_user_limited(channel, opts):
            return self.user_allowed(channel, user) or self.insecure
        if opts.allow_subscribe_for_client and (user or opts.allow_subscribe_for_anonymous):
            return True
        return self.insecure

    def _allowed(
        self, for_client: bool, for_subscriber: bool, for_anonymous: bool, user: str,
        subscribed: bool,
    ) -> bool:
        """The shared rule of publish/presence/history access (PROTOCOL.md §9.3)."""
        if user or for_anonymous:
            if for_client or (for_subscriber and subscribed):
                return True
        return self.insecure

    def can_publish(self, opts: ChannelOptions, user: str, subscribed: bool) -> bool:
        return self._allowed(opts.allow_publish_for_client, opts.allow_publish_for_subscriber,
                             opts.allow_publish_for_anonymous, user, subscribed)

    def can_presence(self, opts: ChannelOptions, user: str, subscribed: bool) -> bool:
        return self._allowed(opts.allow_presence_for_client, opts.allow_presence_for_subscriber,
                             opts.allow_presence_for_anonymous, user, subscribed)

    def can_history(self, opts: ChannelOptions, user: str, subscribed: bool) -> bool:
        return self._allowed(opts.allow_history_for_client, opts.allow_history_for_subscriber,
                             opts.allow_history_for_anonymous, user, subscribed)
