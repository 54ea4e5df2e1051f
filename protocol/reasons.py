"""Reason codes: the stable strings that explain every rejection and decline.

They travel on the wire (acks, notices, authorization responses), are counted by the gateway
and shown to the cashier. What each means for a person is in protocol/reason_texts.py
(`DESCRIPTIONS`, the single source of the table in docs/protocol.md; a test checks that the
document lists every code and that every code here has its text there): the texts are kept
out of this module so a terminal, which imports the codes, does not carry them (about 5 KB
of the firmware's .mpy budget).
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
CARD_PURCHASE_LIMIT = "card_purchase_limit"  # company cards (protocol/engine_company.py)
CARD_DAY_LIMIT = "card_day_limit"
COMPANY_BUDGET = "company_budget"  # the ledger's shared budget of a company's cards
REWARD_OUT_OF_STOCK = "reward_out_of_stock"  # the ledger's count of a store's reward items
OFFER_USED = "offer_used"  # another store's sale holds or took a targeted offer's last use

# Enrolment at the counter: the ledger's refusals a terminal is told (gateway/enrol.py)
PHONE_INVALID = "phone_invalid"
EMAIL_INVALID = "email_invalid"
EMAIL_TAKEN = "email_taken"  # the phone and the e-mail given belong to two customers
CARD_LINKED = "card_linked"  # the card is another customer's
CUSTOMER_CARD_LIMIT = "customer_card_limit"

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
