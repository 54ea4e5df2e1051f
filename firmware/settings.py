"""The terminal's signed configuration: card programs, offline limits and the hotlist.

Configuration arrives from the gateway as a sealed, versioned, retained message. It is taken
only if its MAC verifies under the terminal's own key (the uplink checks that) and its
version is newer than the one running; an older one is refused and counted (`rollbacks`),
so a replayed old message cannot loosen the limits. The sealed bytes are kept on flash and
verified again at start, so a terminal that boots offline keeps its programs and limits.
"""

from protocol import messages, offline, sealed
from protocol.errors import ProtocolError, ValidationError
from protocol.programs import validate_programs
from protocol.reasons import CONFIG_INVALID, CONFIG_ROLLBACK


def check_programs(programs):
    """The pushed programs, validated by the same code the office runs on its TOML file: a
    terminal refuses a bad program itself (program_invalid) and keeps the ones it had."""
    if not isinstance(programs, dict):
        raise ValidationError(CONFIG_INVALID, "programs is not a map")
    return validate_programs({"programs": programs}) if programs else {}


class Settings:
    def __init__(self, key, programs, storage=None):
        self.key = key
        self.version = 0
        self.programs = check_programs(programs)
        self.limits = offline.check_limits({})
        self.hotlist = ()  # cards the terminal declines, online or offline
        self.rollbacks = 0
        self.invalid = 0
        self.storage = storage
        if storage is not None:
            self._load()

    def _load(self):
        data = self.storage.read_all()
        if not data:
            return
        try:
            fields = sealed.open_message(data, messages.TYPE_CONFIG, self.key)
            self.apply(fields, None)
        except ProtocolError:
            self.invalid += 1  # a damaged copy is ignored; the gateway's retained one returns

    def apply(self, fields, sealed_bytes):
        """Take a verified configuration; raises ValidationError and changes nothing if bad."""
        version = fields["config_version"]
        if version < self.version:
            self.rollbacks += 1
            raise ValidationError(CONFIG_ROLLBACK, "version %d < %d" % (version, self.version))
        if version == self.version:
            return False
        limits = offline.check_limits(fields["limits"])
        programs = check_programs(fields["programs"])
        if sealed_bytes is not None and self.storage is not None:
            self.storage.replace(sealed_bytes)
        self.version, self.limits, self.programs = version, limits, programs
        self.hotlist = tuple(fields.get("hotlist", ()))
        return True

    def on_config(self, fields, sealed_bytes):
        """Uplink callback: a bad or old configuration is counted and ignored."""
        try:
            self.apply(fields, sealed_bytes)
        except ValidationError as error:
            if error.reason != CONFIG_ROLLBACK:
                self.invalid += 1
