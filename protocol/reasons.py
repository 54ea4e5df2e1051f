"""Reason codes: the stable strings that explain every rejection and decline.

They travel on the wire (acks, notices, authorization responses), are counted by the gateway
and shown to the cashier. `DESCRIPTIONS` is the single source of the table in docs/protocol.md;
a test checks that the document lists every code.
"""

# Envelope and encoding
MESSAGE_MALFORMED = "message_malformed"
MESSAGE_TOO_LARGE = "message_too_large"
MESSAGE_TYPE_INVALID = "message_type_invalid"
VERSION_UNSUPPORTED = "version_unsupported"
FIELD_MISSING = "field_missing"
FIELD_INVALID = "field_invalid"
TOPIC_INVALID = "topic_invalid"
TOPIC_MISMATCH = "topic_mismatch"

# Authentication
TERMINAL_UNKNOWN = "terminal_unknown"
ALG_UNSUPPORTED = "alg_unsupported"
MAC_INVALID = "mac_invalid"

# Ordering (per-terminal sequence and hash chain)
SEQ_REPLAYED = "seq_replayed"
SEQ_GAP = "seq_gap"
CHAIN_BROKEN = "chain_broken"
RECORD_LOST = "record_lost"
TIME_INVALID = "time_invalid"

# Money and programs
AMOUNT_INVALID = "amount_invalid"
CURRENCY_UNKNOWN = "currency_unknown"
CURRENCY_MISMATCH = "currency_mismatch"
KIND_UNKNOWN = "kind_unknown"
PROGRAM_UNKNOWN = "program_unknown"
RULE_MISMATCH = "rule_mismatch"
CARD_UNKNOWN = "card_unknown"
CARD_EXISTS = "card_exists"
INSUFFICIENT_VALUE = "insufficient_value"
REFUND_UNKNOWN_ORIGINAL = "refund_unknown_original"
REFUND_EXCEEDS_ORIGINAL = "refund_exceeds_original"
MERCHANT_MISMATCH = "merchant_mismatch"

# The ledger behind the gateway (holds and stand-in, gateway/ledger_holds.py)
STAND_IN_LIMIT = "stand_in_limit"
LEDGER_REFUSED = "ledger_refused"

# Service state
QUEUE_FULL = "queue_full"
HOST_UNAVAILABLE = "host_unavailable"
BROKER_UNTRUSTED = "broker_untrusted"
JOURNAL_FULL = "journal_full"
JOURNAL_FORMAT_UNKNOWN = "journal_format_unknown"
CARD_READ_FAILED = "card_read_failed"
COMMAND_UNKNOWN = "command_unknown"

# The terminal's card reader (PN532) and the card's answers (terminal side)
READER_TIMEOUT = "reader_timeout"
READER_FRAME_INVALID = "reader_frame_invalid"
READER_NACK = "reader_nack"
READER_ERROR_FRAME = "reader_error_frame"
READER_BUS_ERROR = "reader_bus_error"
CARD_ABSENT = "card_absent"
CARD_STATUS = "card_status"
CARD_PULLED = "card_pulled"
CARD_RESPONSE_TOO_LONG = "card_response_too_long"

# Cards: NTAG 424 DNA secure messaging and SUN (protocol/ntag424*.py)
CARD_AUTH_FAILED = "card_auth_failed"
CARD_COMMAND_REFUSED = "card_command_refused"
CARD_RESPONSE_MALFORMED = "card_response_malformed"
APDU_MALFORMED = "apdu_malformed"
SUN_MALFORMED = "sun_malformed"
CARD_FAMILY_UNKNOWN = "card_family_unknown"
CARD_REPLAYED = "card_replayed"
CARD_BLOCKED = "card_blocked"

# Card programs (protocol/engine*.py, protocol/programs.py)
PROGRAM_INVALID = "program_invalid"
PROGRAM_MISMATCH = "program_mismatch"
OPERATION_NOT_IN_PROGRAM = "operation_not_in_program"
TOPUP_FROM_OWN_CARD = "topup_from_own_card"
INSUFFICIENT_POINTS = "insufficient_points"
REDEEM_EXCEEDS_AMOUNT = "redeem_exceeds_amount"
CARD_EXPIRED = "card_expired"
CASH_OUT_NOT_ALLOWED = "cash_out_not_allowed"
REWARD_UNKNOWN = "reward_unknown"

# Configuration and offline acceptance
CONFIG_INVALID = "config_invalid"
CONFIG_ROLLBACK = "config_rollback"
OFFLINE_TIME_LIMIT = "offline_time_limit"
OFFLINE_AMOUNT_LIMIT = "offline_amount_limit"
OFFLINE_KIND_INVALID = "offline_kind_invalid"
AUTH_UNKNOWN = "auth_unknown"
OFFLINE_COUNT_LIMIT = "offline_count_limit"
OFFLINE_CARD_LIMIT = "offline_card_limit"
OFFLINE_TERMINAL_LIMIT = "offline_terminal_limit"
OFFLINE_CARD_UNKNOWN = "offline_card_unknown"
REDEEM_NEEDS_ONLINE = "redeem_needs_online"

DESCRIPTIONS = {
    MESSAGE_MALFORMED: "not a well-formed deterministic CBOR / COSE_Mac0 item",
    MESSAGE_TOO_LARGE: "payload longer than MESSAGE_BYTES_MAX",
    MESSAGE_TYPE_INVALID: "message type field absent or not the type the topic carries",
    VERSION_UNSUPPORTED: "protocol version other than 1",
    FIELD_MISSING: "a required field is absent",
    FIELD_INVALID: "a field has the wrong type, length or an unknown key is present",
    TOPIC_INVALID: "topic does not follow tilltap/v1/{merchant}/{terminal}/{dir}/{leaf}",
    TOPIC_MISMATCH: "terminal or merchant in the topic differs from the signed payload",
    TERMINAL_UNKNOWN: "no key is provisioned for this terminal id",
    ALG_UNSUPPORTED: "COSE protected header names an algorithm other than HMAC 256/256 (5)",
    MAC_INVALID: "the COSE_Mac0 tag does not verify under the terminal's key",
    SEQ_REPLAYED: "sequence number already used with different content",
    SEQ_GAP: "too many records ahead of a missing sequence number; resend from the gap",
    CHAIN_BROKEN: "prev digest is not the digest of the terminal's previous record",
    RECORD_LOST: "the terminal lost this seq's record from its journal (its lost notice)",
    TIME_INVALID: "transaction time is too far in the future",
    AMOUNT_INVALID: "amount not an integer in 0..AMOUNT_MINOR_MAX or inconsistent with the kind",
    CURRENCY_UNKNOWN: "currency is not an ISO 4217 code this deployment knows",
    CURRENCY_MISMATCH: "currency differs from the card's currency",
    KIND_UNKNOWN: "transaction kind not defined by protocol v1",
    PROGRAM_UNKNOWN: "card program not configured",
    RULE_MISMATCH: "points or bonus differ from what the program rules compute",
    CARD_UNKNOWN: "card was never issued",
    CARD_EXISTS: "card is already issued",
    INSUFFICIENT_VALUE: "card value is less than the amount asked from the card",
    REFUND_UNKNOWN_ORIGINAL: "refund names a purchase that does not exist",
    REFUND_EXCEEDS_ORIGINAL: "refund would return more than the purchase took",
    MERCHANT_MISMATCH: "terminal belongs to another merchant",
    STAND_IN_LIMIT: "ledger out of reach, and the gateway's stand-in limits do not cover this",
    LEDGER_REFUSED: "the ledger refused the hold for a reason of its own (an alarm is raised)",
    QUEUE_FULL: "gateway overloaded; the record was not stored, resend later",
    HOST_UNAVAILABLE: "no authorization answer in time (terminal side); or the gateway's"
                      " store cannot keep an approval now (gateway side)",
    BROKER_UNTRUSTED: "the broker's TLS certificate is not the store CA's, or it refused the"
                      " handshake (terminal side)",
    JOURNAL_FULL: "terminal journal is full of unsent records (terminal side)",
    JOURNAL_FORMAT_UNKNOWN: "the journal was written by a newer firmware (terminal side)",
    CARD_READ_FAILED: "no card answered the reader in time (terminal side)",
    COMMAND_UNKNOWN: "the keypad sent a command the terminal does not know (terminal side)",
    READER_TIMEOUT: "the PN532 did not answer in time (terminal side)",
    READER_FRAME_INVALID: "the PN532 kept answering with damaged frames (terminal side)",
    READER_NACK: "the PN532 refused our frames (terminal side)",
    READER_ERROR_FRAME: "the PN532 reported a syntax error (terminal side)",
    READER_BUS_ERROR: "the I2C/SPI/UART bus to the PN532 failed (terminal side)",
    CARD_ABSENT: "no card in the field (terminal side)",
    CARD_STATUS: "the PN532 reported an error talking to the card (terminal side)",
    CARD_PULLED: "the card left the field mid-exchange (terminal side)",
    CARD_RESPONSE_TOO_LONG: "a chained card answer passed APDU_BYTES_MAX (terminal side)",
    CARD_AUTH_FAILED: "a card MAC or cryptogram does not verify, or the card answered 91 AE",
    CARD_COMMAND_REFUSED: "the card answered a command with an error status",
    CARD_RESPONSE_MALFORMED: "a card response has the wrong length, padding or status word",
    APDU_MALFORMED: "a command APDU whose length fields do not match its bytes (card side)",
    SUN_MALFORMED: "a SUN URL or field is missing, duplicated, not hex or of the wrong length",
    CARD_FAMILY_UNKNOWN: "PICCDataTag or PICCData length of a card family tilltap does not issue",
    CARD_REPLAYED: "SUN read counter not above the last one accepted for this card (clone/replay)",
    CARD_BLOCKED: "the card is on the hotlist",
    PROGRAM_INVALID: "program configuration breaks a rule (the detail names the key)",
    PROGRAM_MISMATCH: "the card belongs to another program than the one given",
    OPERATION_NOT_IN_PROGRAM: "the card's program does not offer this (top-up, card value, points)",
    TOPUP_FROM_OWN_CARD: "a top-up cannot be paid from the same card's balance",
    INSUFFICIENT_POINTS: "the card holds fewer points than the customer wants to redeem",
    REDEEM_EXCEEDS_AMOUNT: "the points redeemed are worth more than the amount due",
    CARD_EXPIRED: "the card's value has expired (gift card past its expiry day)",
    CASH_OUT_NOT_ALLOWED: "the program does not pay card value out in cash",
    REWARD_UNKNOWN: "the card's program has no reward item of that id",
    CONFIG_INVALID: "signed configuration with a limit that is unknown or not an amount",
    CONFIG_ROLLBACK: "signed configuration older than the one the terminal runs",
    OFFLINE_TIME_LIMIT: "offline longer than offline_s_max, or not online since start",
    OFFLINE_AMOUNT_LIMIT: "offline purchase above txn_minor_max",
    OFFLINE_KIND_INVALID: "a record marked offline that is not a purchase",
    AUTH_UNKNOWN: ("an online or stand-in record names an authorization this gateway never"
                   " gave (as stand-in, for a stand-in record)"),
    OFFLINE_COUNT_LIMIT: "more offline transactions than offline_txn_max",
    OFFLINE_CARD_LIMIT: "card's offline total would pass card_offline_minor_max",
    OFFLINE_TERMINAL_LIMIT: "terminal's offline total would pass terminal_offline_minor_max",
    OFFLINE_CARD_UNKNOWN: "offline, and the terminal has not seen this card online",
    REDEEM_NEEDS_ONLINE: "points are redeemed only online (the gateway holds the balance)",
}
