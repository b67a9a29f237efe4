# SPDX-License-Identifier: Apache-2.0
"""Settings parsing and validation shared by every package: the lowest layer of twin_ext.

One validator for unknown keys (`check_keys`), one builder of settings dataclasses from TOML or Kit
mappings (`section_from_mapping`), one robot-id rule (`check_robot_id`), one broker-URL parser
(`parse_broker_url`) and one error for bad settings (`ConfigError`). Which sections a twin reads is
decided where a twin is assembled (`twin_ext.live.TWIN_SECTIONS`), not here.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     rate_hz: float = 60.0
    >>> section_from_mapping(Demo, {"rate_hz": 30}, section="demo")
    Demo(rate_hz=30.0)
    >>> section_from_mapping(Demo, {"rate": 30}, section="demo")
    Traceback (most recent call last):
    ...
    twin_ext.config._validate.ConfigError: [demo] unknown key 'rate' (did you mean 'rate_hz'?); valid keys: ['rate_hz']
"""

from ._broker_url import BrokerAddress, parse_broker_url
from ._files import load_toml
from ._names import ROBOT_ID_RULE, check_robot_id, check_topic_prefix, robot_id_problem
from ._validate import ConfigError, check_keys, section_from_mapping

__all__ = [
    "ROBOT_ID_RULE",
    "BrokerAddress",
    "ConfigError",
    "check_keys",
    "check_robot_id",
    "check_topic_prefix",
    "load_toml",
    "parse_broker_url",
    "robot_id_problem",
    "section_from_mapping",
]
