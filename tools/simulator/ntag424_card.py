"""An emulated NTAG 424 DNA: ISO 7816-4 wrapped native commands, EV2 secure messaging, SUN.

    card = Ntag424Card(bytes.fromhex("04DE5F1EACC040"))   # factory state: five all-zero keys
    card.apdu(bytes.fromhex("00A4040C07D276000085010100"))  # -> 90 00 (NDEF application)

It answers as the NT4H2421Gx datasheet and AN12196 describe, with the card-side halves of
`protocol.ntag424_auth` (PiccAuthentication) and `protocol.ntag424_sm` (Session):

    00 A4  ISOSelectFile     the NDEF application by DF name D2760000850101 (P1 04), or
                             E103 CC / E104 NDEF / E105 proprietary by file id (P1 00 or 02)
    00 B0  ISOReadBinary     of the selected file, or of an SFI (P1 = 80 | file number)
    00 D6  ISOUpdateBinary   of the selected file (write access must be free)
    90 60  GetVersion        three frames: hardware 91 AF, software 91 AF, production 91 00
    90 71  AuthenticateEV2First, 90 77 NonFirst, each followed by 90 AF
    90 51  GetCardUID        CommMode Full
    90 64  GetKeyVersion     CommMode MAC in a session
    90 C4  ChangeKey         Full; key 0 only; NewKey || KeyVer for the authenticated key,
                             (NewKey ^ OldKey) || KeyVer || CRC32NK(NewKey) for another
    90 F5  GetFileSettings   CommMode MAC in a session, plain outside one
    90 5F  ChangeFileSettings  Full when Change access is a key; with the SDM options
    90 AD  ReadData, 90 8D WriteData   in the file's CommMode when a key grants the access

Status words: 91 00 / 90 00 success; native errors 91 AE authentication (also: an access right
names a key this session did not authenticate with), 91 9D permission denied (access F),
91 1E integrity (wrong MACt, padding, CRC32NK), 91 7E length, 91 9E parameter, 91 BE
boundary, 91 F0 no such file, 91 40 no such key, 91 1C illegal command; ISO errors 67 00,
69 82 (security status), 69 86 (no file selected), 6A 82 (not found), 6A 86, 6B 00,
6D 00, 6E 00, and 62 82 when fewer bytes than Le remain. Any native error ends the
authenticated session, as `Session.response` does on the reader's side. After power-up (and
`activate()`) the card is at MF level: only GetVersion and selecting the NDEF application work;
selecting the application again ends any session.

Files (factory settings): 1 = E103 CC, 32 bytes, read free, plain; 2 = E104 NDEF, 256 bytes,
read / write free, plain, change key 0; 3 = E105 proprietary, 128 bytes, Full, read key 2,
write key 3. SDM is possible on file 2 only, with ASCII encoding.

SDM. An unauthenticated read (ISOReadBinary or ReadData with free read access) of the NDEF
file with SDM on returns the stored file with the live values written over the template:
plain UID and counter (SDMMetaRead E), or PICCData = E(K[MetaRead], C7 || UID || SDMReadCtr
|| random) (MetaRead a key); SDMENCFileData (the first SDMENCLength / 2 stored bytes at
SDMENCOffset, encrypted under K[FileRead]'s session key); and SDMMAC over the mirrored text
from SDMMACInputOffset to SDMMACOffset. Values are uppercase hex, the counter MSB first.
SDMReadCtr goes up by one on the first such read of a read session, which starts at
activation, at every ISOSelectFile and after any write or settings change: a reader that
reads the file in several pieces sees one URL, and every tap (select, read) a new one.
Enabling SDM with ChangeFileSettings resets SDMReadCtr to 0; the file is refused (91 9D /
69 82) once the counter reaches SDMReadCtrLimit or 0xFFFFFF. Authenticated reads return the
stored template.

`state()` is a JSON-safe dict of everything the chip keeps across power-off (UID, keys, key
versions, files, settings, counter); `Ntag424Card.from_state(state)` builds an exact copy,
i.e. a perfect clone. `random(count) -> bytes` is the seam for RndB, TI and PICCData
padding (default os.urandom).

Not emulated: LRP mode, random ID, GetFileCounters, ReadSig, TagTamper, ISO chaining,
multi-frame (91 AF) answers in a session (long Full reads come back in one response), and
GetVersion's MAC in a session (answered plain, the session untouched). Written in the subset
of Python that MicroPython runs, so emulator tests run on both interpreters.
"""

from protocol import aes, ntag424
from protocol import ntag424_files as files
from protocol import ntag424_sun as sun
from protocol.errors import AuthenticationError, ValidationError
from protocol.ntag424_auth import RANDOM_BYTES, PiccAuthentication, parse_first_command
from protocol.ntag424_commands import crc32_nk
from protocol.ntag424_sm import COMM_FULL, COMM_MAC, COMM_PLAIN, TRANSACTION_ID_BYTES

UID_BYTES = 7
KEY_COUNT = 5
SENS_RES = b"\x03\x44"  # ATQA 0344: double-size UID
SEL_RES = 0x20  # SAK: ISO/IEC 14443-4 compliant
ATS = b"\x06\x77\x77\x71\x02\x80"  # TL 06, FSCI 7 (128-byte frames), TA 77, TB 71, TC 02, 80
HARDWARE_VERSION = b"\x04\x04\x02\x30\x00\x11\x05"  # NXP, NTAG, 50 pF, 3.0, 256 B, ISO 14443-4
SOFTWARE_VERSION = b"\x04\x04\x02\x01\x01\x11\x05"
PRODUCTION_DEFAULT = b"\xcd\x65\x93\x5d\x40\x21\x18"  # batch, FabKey, week 21, year 18 (AN12196)
CC_FILE_DEFAULT = bytes.fromhex(  # CCLEN 0017, T4T 2.0, MLe 0100, MLc 00FF, NDEF and prop TLVs
    "001720010000ff0406e104010000000506e10500808283"
) + bytes(9)
NDEF_FILE_BYTES = 256
PROPRIETARY_FILE_BYTES = 128
READ_COUNTER_MAX = 0xFFFFFF
STATE_FORMAT = "tilltap-ntag424-emulator/1"

SW_OK = 0x9000
SW_END_OF_FILE = 0x6282
SW_WRONG_LENGTH = 0x6700
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_NO_CURRENT_FILE = 0x6986
SW_NOT_FOUND = 0x6A82
SW_INCORRECT_P1_P2 = 0x6A86
SW_WRONG_OFFSET = 0x6B00
SW_INS_NOT_SUPPORTED = 0x6D00
SW_CLA_NOT_SUPPORTED = 0x6E00

STATUS_OK = ntag424.STATUS_OK
STATUS_ILLEGAL_COMMAND = 0x1C
STATUS_INTEGRITY_ERROR = ntag424.STATUS_INTEGRITY_ERROR
STATUS_NO_SUCH_KEY = 0x40
STATUS_LENGTH_ERROR = ntag424.STATUS_LENGTH_ERROR
STATUS_PERMISSION_DENIED = ntag424.STATUS_PERMISSION_DENIED
STATUS_PARAMETER_ERROR = 0x9E
STATUS_AUTHENTICATION_ERROR = ntag424.STATUS_AUTHENTICATION_ERROR
STATUS_BOUNDARY_ERROR = 0xBE
STATUS_FILE_NOT_FOUND = 0xF0

INS_GET_KEY_VERSION = 0x64
FILE_IDS = {
    ntag424.FILE_ID_CAPABILITY_CONTAINER: 1,
    ntag424.FILE_ID_NDEF: 2,
    ntag424.FILE_ID_PROPRIETARY: 3,
}
SDM_FILE_NUMBER = 2

_FILE_HEADER_BYTES = 7  # FileNo Offset(3) Length(3)
_UID_HEX_CHARS = 2 * UID_BYTES
_COUNTER_HEX_CHARS = 2 * sun.READ_COUNTER_BYTES
_PICC_DATA_HEX_CHARS = 2 * sun.PICC_DATA_BYTES
_SDM_MAC_HEX_CHARS = 2 * sun.SDM_MAC_BYTES
_ENC_BLOCK_HEX_CHARS = 2 * aes.BLOCK_BYTES
_SDM_OPTIONS_RFU = 0x0E
_FILE_OPTION_RFU = 0xBC
_COMM_MODE_RESERVED = 2


def _system_random(count):
    import os

    return os.urandom(count)


class _Refused(Exception):
    """A command the card refuses with `status_word`."""

    def __init__(self, status_word):
        super().__init__(status_word)
        self.status_word = status_word


def _native_error(status):
    return _Refused((ntag424.SW1_NATIVE << 8) | status)


def _iso_error(status_word):
    return _Refused(status_word)


def _status_word(status_word, data=b""):
    return bytes(data) + bytes((status_word >> 8, status_word & 0xFF))


def _hex_upper(data):
    return bytes(data).hex().upper().encode()


class CardFile:
    """One standard data file: its contents and its FileSettings (file_size always set)."""

    def __init__(self, number, file_id, size, settings):
        self.number = number
        self.file_id = file_id
        settings.file_size = size
        self.settings = settings
        self.data = bytearray(size)

    def settings_bytes(self):
        """GetFileSettings' plain answer: FileType FileOption AR(2) FileSize(3) [SDM part]."""
        change = files.encode_change(self.settings)
        size = self.settings.file_size.to_bytes(3, "little")
        return bytes((self.settings.file_type,)) + change[:3] + size + change[3:]


def factory_files():
    """{file number: CardFile} as NXP delivers NTAG 424 DNA."""
    cc = CardFile(1, ntag424.FILE_ID_CAPABILITY_CONTAINER, len(CC_FILE_DEFAULT),
                  files.FileSettings(COMM_PLAIN, files.ACCESS_FREE, 0, 0, 0))
    cc.data[:] = CC_FILE_DEFAULT
    ndef = CardFile(2, ntag424.FILE_ID_NDEF, NDEF_FILE_BYTES,
                    files.FileSettings(COMM_PLAIN, files.ACCESS_FREE, files.ACCESS_FREE,
                                       files.ACCESS_FREE, 0))
    proprietary = CardFile(3, ntag424.FILE_ID_PROPRIETARY, PROPRIETARY_FILE_BYTES,
                           files.FileSettings(COMM_FULL, 2, 3, 3, 0))
    return {1: cc, 2: ndef, 3: proprietary}


def _access_nibbles(data):
    """All access-right nibbles of ChangeFileSettings data (AR, and SDMAccessRights if SDM)."""
    rights = bytes(data[1:3])
    if data[0] & files.FILE_OPTION_SDM:
        rights += bytes(data[4:6])  # after SDMOptions
    nibbles = []
    for byte in rights:
        nibbles.append(byte >> 4)
        nibbles.append(byte & 0x0F)
    return nibbles


def _valid_access(nibble):
    return nibble <= files.KEY_NUMBER_MAX or nibble in (files.ACCESS_FREE, files.ACCESS_NEVER)


def decode_change(file, data):
    """FileSettings from ChangeFileSettings' plain data for `file`; _Refused if refused."""
    if len(data) < 3:
        raise _native_error(STATUS_LENGTH_ERROR)
    size = file.settings.file_size.to_bytes(3, "little")
    try:
        settings = files.decode_settings(bytes((0,)) + data[:3] + size + data[3:])
    except ValidationError:
        settings = None
    if settings is None:
        raise _native_error(STATUS_LENGTH_ERROR)
    bad = (data[0] & _FILE_OPTION_RFU or settings.comm_mode == _COMM_MODE_RESERVED
           or not all(_valid_access(nibble) for nibble in _access_nibbles(data)))
    if settings.sdm_enabled:
        bad = bad or file.number != SDM_FILE_NUMBER or not sdm_layout_fits(settings)
        bad = bad or data[4] >> 4 != files.ACCESS_NEVER  # the RFU nibble of SDMAccessRights
    if bad:
        raise _native_error(STATUS_PARAMETER_ERROR)
    return settings


def _mirror_regions(settings):
    """(offset, length) of each text the card writes into the file, or None if inconsistent."""
    s = settings
    uid, counter = s.sdm_options & files.SDM_UID, s.sdm_options & files.SDM_READ_COUNTER
    regions = []
    if s.sdm_meta_read == files.ACCESS_FREE:
        if uid:
            regions.append((s.uid_offset, _UID_HEX_CHARS))
        if counter:
            regions.append((s.read_counter_offset, _COUNTER_HEX_CHARS))
    elif s.sdm_meta_read <= files.KEY_NUMBER_MAX:
        if not (uid or counter):
            return None
        regions.append((s.picc_data_offset, _PICC_DATA_HEX_CHARS))
    encrypted = s.sdm_options & files.SDM_ENC_FILE_DATA
    if s.sdm_file_read <= files.KEY_NUMBER_MAX:
        if s.mac_input_offset > s.mac_offset:
            return None
        regions.append((s.mac_offset, _SDM_MAC_HEX_CHARS))
        if encrypted:
            if not (uid and counter) or s.enc_length == 0 or s.enc_length % _ENC_BLOCK_HEX_CHARS:
                return None
            if s.enc_offset < s.mac_input_offset or s.enc_offset + s.enc_length > s.mac_offset:
                return None
            regions.append((s.enc_offset, s.enc_length))
    elif encrypted or s.sdm_file_read == files.ACCESS_FREE:
        return None
    return regions


def sdm_layout_fits(settings):
    """True if the SDM options are ASCII, consistent, inside the file and do not overlap."""
    if settings.sdm_options & _SDM_OPTIONS_RFU or not settings.sdm_options & files.SDM_ASCII:
        return False
    regions = _mirror_regions(settings)
    if regions is None:
        return False
    regions.sort()
    end = 0
    for offset, length in regions:
        if offset < end or offset + length > settings.file_size:
            return False
        end = offset + length
    return True


class Ntag424Card:
    """One NTAG 424 DNA in a reader's field; `apdu(command) -> response` is the whole API.

    `uid` (7 bytes), `sens_res`, `sel_res` and `ats` let it sit in tools/simulator's PN532.
    """

    def __init__(self, uid, keys=None, random=None, production=PRODUCTION_DEFAULT):
        assert len(uid) == UID_BYTES, "NTAG 424 DNA UIDs are 7 bytes"
        self.uid = bytes(uid)
        self.keys = [bytes(16)] * KEY_COUNT if keys is None else [bytes(k) for k in keys]
        assert len(self.keys) == KEY_COUNT and all(len(k) == aes.KEY_BYTES for k in self.keys)
        self.key_versions = [0] * KEY_COUNT
        self.files = factory_files()
        self.sdm_read_counter = 0
        self.production = bytes(production)
        self.sens_res = SENS_RES
        self.sel_res = SEL_RES
        self.ats = ATS
        self.random = random if random is not None else _system_random
        self.activate()

    # -- power and state ----------------------------------------------------------------------

    def activate(self):
        """Field on / ISO 14443-4 activation: MF level, no session, a new read session."""
        self.application_selected = False
        self.selected_file = None
        self.session = None
        self._pending = None  # ("auth", PiccAuthentication) or ("version", next frame index)
        self._mirrored = None  # the NDEF file as mirrored for this read session

    def state(self):
        """What the chip keeps across power-off, as a JSON-safe dict (holds the keys)."""
        return {
            "format": STATE_FORMAT,
            "uid": self.uid.hex(),
            "keys": [key.hex() for key in self.keys],
            "key_versions": list(self.key_versions),
            "files": {
                str(number): {"data": bytes(file.data).hex(),
                              "settings": file.settings_bytes().hex()}
                for number, file in self.files.items()
            },
            "sdm_read_counter": self.sdm_read_counter,
            "production": self.production.hex(),
        }

    @classmethod
    def from_state(cls, state, random=None):
        """A card with exactly the UID, keys, files and counter of `state` (a clone)."""
        assert state.get("format") == STATE_FORMAT, "not an emulator state"
        card = cls(bytes.fromhex(state["uid"]), [bytes.fromhex(k) for k in state["keys"]],
                   random, bytes.fromhex(state["production"]))
        card.key_versions = list(state["key_versions"])
        for number, saved in state["files"].items():
            file = card.files[int(number)]
            file.settings = files.decode_settings(bytes.fromhex(saved["settings"]))
            file.data = bytearray(bytes.fromhex(saved["data"]))
        card.sdm_read_counter = state["sdm_read_counter"]
        return card

    def clone(self, random=None):
        return Ntag424Card.from_state(self.state(), random)

    # -- dispatch -----------------------------------------------------------------------------

    def apdu(self, command):
        """The R-APDU (data || SW1 SW2) this card answers to the C-APDU `command`."""
        command = bytes(command)
        try:
            cla, ins, p1, p2, data, le = ntag424.parse_command(command)
        except ValidationError:
            if command[:1] == bytes((ntag424.CLA_NATIVE,)):
                return self._native_failure(_native_error(STATUS_LENGTH_ERROR))
            return _status_word(SW_WRONG_LENGTH)
        if cla == ntag424.CLA_NATIVE:
            try:
                return self._native(ins, data)
            except _Refused as refusal:
                return self._native_failure(refusal)
        if cla == ntag424.CLA_ISO:
            self._pending = None
            try:
                return self._iso(ins, p1, p2, data, le)
            except _Refused as refusal:
                return _status_word(refusal.status_word)
        return _status_word(SW_CLA_NOT_SUPPORTED)

    def _native_failure(self, refusal):
        self._pending = None
        self.session = None  # any error ends the authentication, on both sides
        return _status_word(refusal.status_word)

    def _native(self, ins, data):
        pending, self._pending = self._pending, None
        if ins == ntag424.INS_ADDITIONAL_FRAME:
            if pending is None:
                raise _native_error(STATUS_ILLEGAL_COMMAND)
            if pending[0] == "auth":
                return self._authenticate_finish(pending[1], data)
            return self._get_version_frame(pending[1], data)
        if ins == ntag424.INS_GET_VERSION:
            return self._get_version_frame(0, data)
        handler = {
            ntag424.INS_AUTHENTICATE_EV2_FIRST: self._authenticate_first,
            ntag424.INS_AUTHENTICATE_EV2_NON_FIRST: self._authenticate_non_first,
            ntag424.INS_GET_CARD_UID: self._get_card_uid,
            INS_GET_KEY_VERSION: self._get_key_version,
            ntag424.INS_CHANGE_KEY: self._change_key,
            ntag424.INS_GET_FILE_SETTINGS: self._get_file_settings,
            ntag424.INS_CHANGE_FILE_SETTINGS: self._change_file_settings,
            ntag424.INS_READ_DATA: self._read_data,
            ntag424.INS_WRITE_DATA: self._write_data,
        }.get(ins)
        if handler is None:
            raise _native_error(STATUS_ILLEGAL_COMMAND)
        if not self.application_selected:
            raise _native_error(STATUS_PERMISSION_DENIED)
        return handler(data)

    # -- secure messaging helpers ---------------------------------------------------------------

    def _require_session(self):
        if self.session is None:
            raise _native_error(STATUS_AUTHENTICATION_ERROR)
        return self.session

    def _open(self, ins, data, header_bytes, comm_mode):
        """(header, plain data) of a command: through the session if there is one."""
        if self.session is None:
            if comm_mode != COMM_PLAIN or len(data) < header_bytes:
                raise _native_error(STATUS_LENGTH_ERROR)
            return bytes(data[:header_bytes]), bytes(data[header_bytes:])
        mac_bytes = 0 if comm_mode == COMM_PLAIN else 8
        if len(data) < header_bytes + mac_bytes:
            raise _native_error(STATUS_LENGTH_ERROR)
        opened = None
        try:
            opened = self.session.open_command(ins, data, header_bytes, comm_mode)
        except (AuthenticationError, ValidationError):
            opened = None  # a wrong MACt, or ciphertext that does not decrypt to padded data
        if opened is None:
            raise _native_error(STATUS_INTEGRITY_ERROR)
        return opened

    def _answer(self, data, comm_mode):
        if self.session is None:
            return ntag424.status_response(STATUS_OK, data)
        return self.session.answer(data, comm_mode)

    def _file(self, number):
        file = self.files.get(number)
        if file is None:
            raise _native_error(STATUS_FILE_NOT_FOUND)
        return file

    def _access_mode(self, rights, key_mode):
        """The CommMode of an access: `key_mode` if the session's key is among `rights`,
        plain if one of them is free; 91 AE if a key is needed, 91 9D if all are never."""
        if self.session is not None and self.session.key_number in rights:
            return key_mode
        if files.ACCESS_FREE in rights:
            return COMM_PLAIN
        if all(right == files.ACCESS_NEVER for right in rights):
            raise _native_error(STATUS_PERMISSION_DENIED)
        raise _native_error(STATUS_AUTHENTICATION_ERROR)

    # -- GetVersion and authentication ---------------------------------------------------------

    def _get_version_frame(self, index, data):
        if data:
            raise _native_error(STATUS_LENGTH_ERROR)
        if index == 0:
            self._pending = ("version", 1)
            return ntag424.status_response(ntag424.STATUS_ADDITIONAL_FRAME, HARDWARE_VERSION)
        if index == 1:
            self._pending = ("version", 2)
            return ntag424.status_response(ntag424.STATUS_ADDITIONAL_FRAME, SOFTWARE_VERSION)
        return ntag424.status_response(STATUS_OK, self.uid + self.production)

    def _authenticate_first(self, data):
        self.session = None  # a new authentication drops the old one at once
        self._mirrored = None
        try:
            key_number, pcd_capabilities = parse_first_command(data)
        except ValidationError:
            key_number, pcd_capabilities = None, None
        if key_number is None:
            raise _native_error(STATUS_LENGTH_ERROR)
        key = self._key(key_number)
        rnd_b = self._random_bytes(RANDOM_BYTES)
        transaction_id = self._random_bytes(TRANSACTION_ID_BYTES)
        authentication = PiccAuthentication(key, key_number, rnd_b, transaction_id,
                                            pcd_capabilities=pcd_capabilities)
        self._pending = ("auth", authentication)
        return authentication.challenge()

    def _authenticate_non_first(self, data):
        previous = self._require_session()
        if len(data) != 1:
            raise _native_error(STATUS_LENGTH_ERROR)
        key = self._key(data[0])
        rnd_b = self._random_bytes(RANDOM_BYTES)
        authentication = PiccAuthentication(key, data[0], rnd_b, previous=previous)
        self._pending = ("auth", authentication)
        return authentication.challenge()

    def _authenticate_finish(self, authentication, data):
        if len(data) != 2 * RANDOM_BYTES:
            raise _native_error(STATUS_LENGTH_ERROR)
        try:
            rapdu, session = authentication.verify(data)
        except AuthenticationError:
            rapdu, session = None, None
        if session is None:
            raise _native_error(STATUS_AUTHENTICATION_ERROR)
        self.session = session
        return rapdu

    def _key(self, key_number):
        if not 0 <= key_number < KEY_COUNT:
            raise _native_error(STATUS_NO_SUCH_KEY)
        return self.keys[key_number]

    def _random_bytes(self, count):
        value = bytes(self.random(count))
        assert len(value) == count, "the random seam returned the wrong length"
        return value

    # -- keys ---------------------------------------------------------------------------------

    def _get_card_uid(self, data):
        self._require_session()
        self._open(ntag424.INS_GET_CARD_UID, data, 0, COMM_FULL)
        return self._answer(self.uid, COMM_FULL)

    def _get_key_version(self, data):
        comm_mode = COMM_PLAIN if self.session is None else COMM_MAC
        header, _ = self._open(INS_GET_KEY_VERSION, data, 1, comm_mode)
        self._key(header[0])
        return self._answer(bytes((self.key_versions[header[0]],)), comm_mode)

    def _change_key(self, data):
        session = self._require_session()
        header, plain = self._open(ntag424.INS_CHANGE_KEY, data, 1, COMM_FULL)
        if session.key_number != 0:
            raise _native_error(STATUS_AUTHENTICATION_ERROR)
        key_number = header[0]
        self._key(key_number)
        if key_number == session.key_number:
            if len(plain) != aes.KEY_BYTES + 1:
                raise _native_error(STATUS_LENGTH_ERROR)
            new_key = plain[: aes.KEY_BYTES]
            response = session.answer(b"", COMM_PLAIN)
            self.session = None  # the card forgets a session whose key changed
        else:
            if len(plain) != aes.KEY_BYTES + 5:
                raise _native_error(STATUS_LENGTH_ERROR)
            new_key = aes.xor_bytes(plain[: aes.KEY_BYTES], self.keys[key_number])
            if crc32_nk(new_key) != plain[aes.KEY_BYTES + 1 :]:
                raise _native_error(STATUS_INTEGRITY_ERROR)
            response = session.answer(b"", COMM_FULL)
        self.keys[key_number] = new_key
        self.key_versions[key_number] = plain[aes.KEY_BYTES]
        return response

    # -- file settings --------------------------------------------------------------------------

    def _get_file_settings(self, data):
        if not data:
            raise _native_error(STATUS_LENGTH_ERROR)
        file = self._file(data[0])
        comm_mode = COMM_PLAIN if self.session is None else COMM_MAC
        self._open(ntag424.INS_GET_FILE_SETTINGS, data, 1, comm_mode)
        if self.session is None and len(data) != 1:
            raise _native_error(STATUS_LENGTH_ERROR)
        return self._answer(file.settings_bytes(), comm_mode)

    def _change_file_settings(self, data):
        if not data:
            raise _native_error(STATUS_LENGTH_ERROR)
        file = self._file(data[0])
        comm_mode = self._access_mode((file.settings.change,), COMM_FULL)
        _, plain = self._open(ntag424.INS_CHANGE_FILE_SETTINGS, data, 1, comm_mode)
        file.settings = decode_change(file, plain)
        if file.settings.sdm_enabled:
            self.sdm_read_counter = 0
        self._mirrored = None
        return self._answer(b"", comm_mode)

    # -- data -----------------------------------------------------------------------------------

    def _file_header(self, ins, data, access):
        """(file, offset, length, plain data, comm mode) of ReadData / WriteData."""
        if len(data) < _FILE_HEADER_BYTES:
            raise _native_error(STATUS_LENGTH_ERROR)
        file = self._file(data[0])
        s = file.settings
        rights = (s.read, s.read_write) if access == "read" else (s.write, s.read_write)
        comm_mode = self._access_mode(rights, s.comm_mode)
        header, plain = self._open(ins, data, _FILE_HEADER_BYTES, comm_mode)
        offset = int.from_bytes(header[1:4], "little")
        length = int.from_bytes(header[4:7], "little")
        if offset + length > s.file_size or (length == 0 and offset >= s.file_size):
            raise _native_error(STATUS_BOUNDARY_ERROR)
        return file, offset, length, plain, comm_mode

    def _read_data(self, data):
        file, offset, length, plain, comm_mode = self._file_header(
            ntag424.INS_READ_DATA, data, "read")
        if plain:
            raise _native_error(STATUS_LENGTH_ERROR)
        contents = self._contents(file, (ntag424.SW1_NATIVE << 8) | STATUS_PERMISSION_DENIED)
        end = file.settings.file_size if length == 0 else offset + length
        return self._answer(contents[offset:end], comm_mode)

    def _write_data(self, data):
        file, offset, length, plain, comm_mode = self._file_header(
            ntag424.INS_WRITE_DATA, data, "write")
        if length == 0 or len(plain) != length:
            raise _native_error(STATUS_LENGTH_ERROR)
        file.data[offset : offset + length] = plain
        self._mirrored = None
        return self._answer(b"", comm_mode)

    # -- ISO commands ---------------------------------------------------------------------------

    def _iso(self, ins, p1, p2, data, le):
        if ins == ntag424.INS_ISO_SELECT_FILE:
            return self._iso_select(p1, p2, data)
        if ins == ntag424.INS_ISO_READ_BINARY:
            return self._iso_read_binary(p1, p2, data, le)
        if ins == ntag424.INS_ISO_UPDATE_BINARY:
            return self._iso_update_binary(p1, p2, data)
        return _status_word(SW_INS_NOT_SUPPORTED)

    def _iso_select(self, p1, p2, data):
        self._mirrored = None  # every selection starts a new read session
        if p2 & ~0x0C:
            raise _iso_error(SW_INCORRECT_P1_P2)
        if p1 == 0x04:
            if data != ntag424.NDEF_APPLICATION_DF_NAME:
                raise _iso_error(SW_NOT_FOUND)
            self.application_selected = True
            self.selected_file = None
            self.session = None  # selecting the application ends any authentication
            return _status_word(SW_OK)
        if p1 not in (0x00, 0x02):
            raise _iso_error(SW_INCORRECT_P1_P2)
        if len(data) != 2:
            raise _iso_error(SW_WRONG_LENGTH)
        number = FILE_IDS.get(int.from_bytes(data, "big"))
        if number is None or not self.application_selected:
            raise _iso_error(SW_NOT_FOUND)
        self.selected_file = self.files[number]
        return _status_word(SW_OK)

    def _iso_file(self, p1, p2):
        """(file, offset) of ISOReadBinary / ISOUpdateBinary: the selected file or an SFI."""
        if not self.application_selected:
            raise _iso_error(SW_NO_CURRENT_FILE)
        if p1 & 0x80:
            if p1 & 0x60 or (p1 & 0x1F) not in self.files:
                raise _iso_error(SW_NOT_FOUND)
            self.selected_file = self.files[p1 & 0x1F]
            return self.selected_file, p2
        if self.selected_file is None:
            raise _iso_error(SW_NO_CURRENT_FILE)
        return self.selected_file, (p1 << 8) | p2

    def _iso_read_binary(self, p1, p2, data, le):
        if data:
            raise _iso_error(SW_WRONG_LENGTH)
        file, offset = self._iso_file(p1, p2)
        s = file.settings
        if files.ACCESS_FREE not in (s.read, s.read_write):
            raise _iso_error(SW_SECURITY_NOT_SATISFIED)
        if offset >= s.file_size:
            raise _iso_error(SW_WRONG_OFFSET)
        wanted = le if le else 256
        chunk = self._contents(file, SW_SECURITY_NOT_SATISFIED)[offset : offset + wanted]
        if le and len(chunk) < le:
            return _status_word(SW_END_OF_FILE, chunk)
        return _status_word(SW_OK, chunk)

    def _iso_update_binary(self, p1, p2, data):
        file, offset = self._iso_file(p1, p2)
        s = file.settings
        if files.ACCESS_FREE not in (s.write, s.read_write):
            raise _iso_error(SW_SECURITY_NOT_SATISFIED)
        if offset >= s.file_size:
            raise _iso_error(SW_WRONG_OFFSET)
        if offset + len(data) > s.file_size:
            raise _iso_error(SW_WRONG_LENGTH)
        file.data[offset : offset + len(data)] = data
        self._mirrored = None
        return _status_word(SW_OK)

    # -- SDM ------------------------------------------------------------------------------------

    def _contents(self, file, refused_status_word):
        """The bytes a read returns: mirrored for an unauthenticated read with SDM on; past
        the counter's limit the read is refused with `refused_status_word`."""
        if not file.settings.sdm_enabled or self.session is not None:
            return bytes(file.data)
        if self._mirrored is None:
            limit = file.settings.read_counter_limit
            if self.sdm_read_counter >= READ_COUNTER_MAX or (
                    limit is not None and self.sdm_read_counter >= limit):
                raise _Refused(refused_status_word)
            self.sdm_read_counter += 1
            self._mirrored = self.mirror(file, self.sdm_read_counter)
        return self._mirrored

    def mirror(self, file, read_counter):
        """`file`'s contents with the SDM values for `read_counter` written in."""
        s = file.settings
        out = bytearray(file.data)
        uid = self.uid if s.sdm_options & files.SDM_UID else None
        counter = read_counter if s.sdm_options & files.SDM_READ_COUNTER else None
        if s.sdm_meta_read == files.ACCESS_FREE:
            if uid is not None:
                out[s.uid_offset : s.uid_offset + _UID_HEX_CHARS] = _hex_upper(uid)
            if counter is not None:
                text = _hex_upper(counter.to_bytes(sun.READ_COUNTER_BYTES, "big"))
                out[s.read_counter_offset : s.read_counter_offset + _COUNTER_HEX_CHARS] = text
        elif s.sdm_meta_read <= files.KEY_NUMBER_MAX:
            picc_data = self.picc_enc_data(self.keys[s.sdm_meta_read], uid, counter)
            out[s.picc_data_offset : s.picc_data_offset + _PICC_DATA_HEX_CHARS] = picc_data
        if s.sdm_file_read <= files.KEY_NUMBER_MAX:
            file_key = self.keys[s.sdm_file_read]
            if s.sdm_options & files.SDM_ENC_FILE_DATA:
                start, end = s.enc_offset, s.enc_offset + s.enc_length
                plain = bytes(out[start : start + s.enc_length // 2])
                out[start:end] = _hex_upper(encrypt_file_data(file_key, uid, counter, plain))
            mac_input = bytes(out[s.mac_input_offset : s.mac_offset])
            mac = sun.sdm_mac(file_key, uid, counter, mac_input)
            out[s.mac_offset : s.mac_offset + _SDM_MAC_HEX_CHARS] = _hex_upper(mac)
        return bytes(out)

    def picc_enc_data(self, meta_key, uid, counter):
        """PICCENCData as uppercase hex: E(K, PICCDataTag || UID || SDMReadCtr || random)."""
        tag = 0
        plain = b""
        if uid is not None:
            tag |= sun.PICC_DATA_TAG_UID | UID_BYTES
            plain += uid
        if counter is not None:
            tag |= sun.PICC_DATA_TAG_READ_COUNTER
            plain += counter.to_bytes(sun.READ_COUNTER_BYTES, "little")
        plain = bytes((tag,)) + plain
        plain += self._random_bytes(sun.PICC_DATA_BYTES - len(plain))
        return _hex_upper(aes.encrypt_block(meta_key, plain))


def encrypt_file_data(file_key, uid, counter, plain):
    """SDMENCFileData: AES-CBC under KSesSDMFileReadENC, IV = E(that key, SDMReadCtr || 0*13)."""
    enc_key = sun.sdm_session_keys(file_key, uid, counter)[0]
    iv_input = counter.to_bytes(sun.READ_COUNTER_BYTES, "little") + bytes(13)
    return aes.cbc_encrypt(enc_key, aes.encrypt_block(enc_key, iv_input), plain)
