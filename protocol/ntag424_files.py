"""NTAG 424 DNA file settings: ChangeFileSettings and GetFileSettings (AN12196 5.3, 6.9).

    ChangeFileSettings data = FileOption AccessRights(2) [SDMOptions SDMAccessRights(2) offsets]
    GetFileSettings answer  = FileType FileOption AccessRights(2) FileSize(3) [same SDM part]

FileOption: bits 1..0 CommMode (00 Plain, 01 MAC, 11 Full), bit 6 SDM enabled.
AccessRights, a 16-bit value sent LSB first: Read(15..12) Write(11..8) ReadWrite(7..4)
Change(3..0); SDMAccessRights likewise: MetaRead FileRead RFU(F) CtrRet. A nibble is a key
number 0..4, E (free) or F (never). SDMOptions: bit 7 UID mirror, 6 SDMReadCtr mirror,
5 SDMReadCtrLimit, 4 SDMENCFileData, 0 ASCII encoding. The 3-byte offsets (LSB first) follow
in this order, each only when its condition holds:

    UIDOffset          UID mirror and MetaRead == E          (plain mirror)
    SDMReadCtrOffset   SDMReadCtr mirror and MetaRead == E
    PICCDataOffset     MetaRead is a key (0..4)              (encrypted PICCData)
    SDMMACInputOffset  FileRead is a key
    SDMENCOffset, SDMENCLength   FileRead is a key and SDMENCFileData
    SDMMACOffset       FileRead is a key
    SDMReadCtrLimit    SDMReadCtrLimit
"""

from protocol.errors import ValidationError
from protocol.ntag424 import CARD_RESPONSE_MALFORMED

ACCESS_FREE = 0xE
ACCESS_NEVER = 0xF
KEY_NUMBER_MAX = 4

FILE_OPTION_SDM = 0x40
FILE_OPTION_COMM_MODE_MASK = 0x03

SDM_UID = 0x80
SDM_READ_COUNTER = 0x40
SDM_READ_COUNTER_LIMIT = 0x20
SDM_ENC_FILE_DATA = 0x10
SDM_ASCII = 0x01

# Offset attributes of FileSettings in wire order; FileSettings._present says which are sent.
_OFFSET_FIELDS = (
    "uid_offset",
    "read_counter_offset",
    "picc_data_offset",
    "mac_input_offset",
    "enc_offset",
    "enc_length",
    "mac_offset",
    "read_counter_limit",
)


class FileSettings:
    """One file's settings; `sdm_*` and offsets matter only when `sdm_enabled`.

    Offsets not present on the wire are None. `file_size` and `file_type` come only from
    GetFileSettings.
    """

    def __init__(self, comm_mode=0, read=ACCESS_FREE, write=0, read_write=0, change=0):
        self.file_type = 0
        self.file_size = None
        self.comm_mode = comm_mode
        self.read = read
        self.write = write
        self.read_write = read_write
        self.change = change
        self.sdm_enabled = False
        self.sdm_options = SDM_ASCII
        self.sdm_meta_read = ACCESS_NEVER
        self.sdm_file_read = ACCESS_NEVER
        self.sdm_counter_retrieval = ACCESS_NEVER
        self.uid_offset = None
        self.read_counter_offset = None
        self.picc_data_offset = None
        self.mac_input_offset = None
        self.enc_offset = None
        self.enc_length = None
        self.mac_offset = None
        self.read_counter_limit = None

    def _present(self, name):
        options = self.sdm_options
        meta_plain = self.sdm_meta_read == ACCESS_FREE
        file_keyed = self.sdm_file_read <= KEY_NUMBER_MAX
        if name == "uid_offset":
            return bool(options & SDM_UID) and meta_plain
        if name == "read_counter_offset":
            return bool(options & SDM_READ_COUNTER) and meta_plain
        if name == "picc_data_offset":
            return self.sdm_meta_read <= KEY_NUMBER_MAX
        if name in ("enc_offset", "enc_length"):
            return file_keyed and bool(options & SDM_ENC_FILE_DATA)
        if name == "read_counter_limit":
            return bool(options & SDM_READ_COUNTER_LIMIT)
        return file_keyed  # mac_input_offset, mac_offset

    def present_offsets(self):
        """Names of the offset fields the wire carries for these SDM settings, in order."""
        return [name for name in _OFFSET_FIELDS if self._present(name)]


def _access_bytes(high, low):
    """Two nibble pairs as the 16-bit value (high byte: first two nibbles) sent LSB first."""
    return bytes((low[0] << 4 | low[1], high[0] << 4 | high[1]))


def encode_change(settings):
    """The plain data of ChangeFileSettings (after FileNo) for `settings`."""
    s = settings
    file_option = s.comm_mode | (FILE_OPTION_SDM if s.sdm_enabled else 0)
    out = bytes((file_option,)) + _access_bytes((s.read, s.write), (s.read_write, s.change))
    if s.sdm_enabled:
        out += bytes((s.sdm_options,))
        out += _access_bytes(
            (s.sdm_meta_read, s.sdm_file_read), (ACCESS_NEVER, s.sdm_counter_retrieval)
        )
        for name in s.present_offsets():
            value = getattr(s, name)
            assert value is not None and 0 <= value <= 0xFFFFFF, name + " must be set"
            out += value.to_bytes(3, "little")
    return out


def _need(data, position, count):
    if len(data) < position + count:
        raise ValidationError(CARD_RESPONSE_MALFORMED, "file settings are too short")


def decode_settings(data):
    """A FileSettings from GetFileSettings' plain answer; ValidationError if it is malformed."""
    _need(data, 0, 7)
    s = FileSettings()
    s.file_type = data[0]
    s.comm_mode = data[1] & FILE_OPTION_COMM_MODE_MASK
    s.sdm_enabled = bool(data[1] & FILE_OPTION_SDM)
    s.read, s.write = data[3] >> 4, data[3] & 0x0F
    s.read_write, s.change = data[2] >> 4, data[2] & 0x0F
    s.file_size = int.from_bytes(data[4:7], "little")
    position = 7
    if s.sdm_enabled:
        _need(data, position, 3)
        s.sdm_options = data[position]
        s.sdm_meta_read, s.sdm_file_read = data[position + 2] >> 4, data[position + 2] & 0x0F
        s.sdm_counter_retrieval = data[position + 1] & 0x0F
        position += 3
        for name in s.present_offsets():
            _need(data, position, 3)
            setattr(s, name, int.from_bytes(data[position : position + 3], "little"))
            position += 3
    if position != len(data):
        raise ValidationError(CARD_RESPONSE_MALFORMED, "file settings have extra bytes")
    return s
