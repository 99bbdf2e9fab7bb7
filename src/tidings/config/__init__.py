"""Configuration: Centrifugo v6 key names, every default in one place (``schema``), loaded
from a file, the environment and flags (``load``), checked across fields (``validate``).

A Centrifugo JSON config works as is for the features Tidings has.
"""

from tidings.config.load import (
    config_from_dict,
    config_from_env,
    config_to_dict,
    load_config,
    parse_duration,
    read_config_file,
)
from tidings.config.schema import (
    ChannelConfig,
    ChannelOptions,
    ClientConfig,
    CommandRateLimit,
    Config,
    ConfigError,
    HttpServerConfig,
    Namespace,
    RateBucket,
    RateLimitConfig,
    RateRule,
    RedisConfig,
    RedisTLSConfig,
    TokenConfig,
)

__all__ = [
    "ChannelConfig",
    "ChannelOptions",
    "ClientConfig",
    "CommandRateLimit",
    "Config",
    "ConfigError",
    "HttpServerConfig",
    "Namespace",
    "RateBucket",
    "RateLimitConfig",
    "RateRule",
    "RedisConfig",
    "RedisTLSConfig",
    "TokenConfig",
    "config_from_dict",
    "config_from_env",
    "config_to_dict",
    "load_config",
    "parse_duration",
    "read_config_file",
]
