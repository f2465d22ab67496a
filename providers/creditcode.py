"""Unified social credit codes (统一社会信用代码) per GB 32100-2015.

    9  1  350100  M000100Y4  3
    |  |  |       |          └ check character: MOD 31 over the first 17 (weights 3^i mod 31)
    |  |  |       └ organisation code (GB 11714): 8 characters + its own MOD 11 check character
    |  |  └ administrative division code (GB/T 2260)
    |  └ organisation type, which depends on the registration authority
    └ registration authority (1 机构编制, 5 民政, 9 市场监管, …)

Every character comes from the 31-character set below (digits and capitals without I, O, Z, S, V).
"""

from dataclasses import dataclass

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
VALUES = {character: index for index, character in enumerate(CHARSET)}
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
ORGANISATION_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
# Registration authority → the organisation types it registers (GB 32100-2015, table 1).
AUTHORITY_TYPES = {
    "1": "1239",  # 机构编制: 机关, 事业单位, 编办直管群众团体, 其他
    "2": "19",  # 外交
    "3": "123459",  # 司法行政: 律师事务所, 公证处, 基层法律服务所, 司法鉴定机构, 仲裁委员会, 其他
    "4": "19",  # 文化
    "5": "1239",  # 民政: 社会团体, 民办非企业单位(社会服务机构), 基金会, 其他
    "6": "129",  # 旅游
    "7": "129",  # 宗教
    "8": "19",  # 工会
    "9": "123",  # 市场监管(工商): 企业, 个体工商户, 农民专业合作社
    "A": "19",  # 中央军委改革和编制办公室
    "N": "1239",  # 农业: 组级, 村级, 乡镇级集体经济组织, 其他
    "Y": "1",  # 其他
}


class InvalidCreditCodeError(ValueError):
    def __init__(self, part: str, message: str):
        super().__init__(message)
        self.part = part
        self.message = message


@dataclass(frozen=True)
class CreditCode:
    code: str

    @property
    def authority(self) -> str:
        return self.code[0]

    @property
    def organisation_type(self) -> str:
        return self.code[1]

    @property
    def region_code(self) -> str:
        return self.code[2:8]

    @property
    def organisation_code(self) -> str:
        return self.code[8:17]


def check_character(first17: str) -> str:
    remainder = sum(VALUES[character] * weight for character, weight in zip(first17, WEIGHTS, strict=True)) % 31
    return CHARSET[(31 - remainder) % 31]


def organisation_check_character(body8: str) -> str:
    """GB 11714 check character over the 8-character body (digits 0–9, letters A=10 … Z=35)."""
    total = sum(int(character, 36) * weight for character, weight in zip(body8, ORGANISATION_WEIGHTS, strict=True))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def parse_credit_code(raw: str) -> CreditCode:
    """Validate an 18-character unified social credit code.

    :raises InvalidCreditCodeError: with `part` naming what is wrong: length, characters, authority,
        organisation_type, region, organisation_code or check_character.
    """
    code = raw.strip().upper()
    if len(code) != 18:
        raise InvalidCreditCodeError("length", f"A unified social credit code has 18 characters, not {len(code)}.")
    bad = sorted({character for character in code if character not in VALUES})
    if bad:
        raise InvalidCreditCodeError(
            "characters", f"Not allowed in a credit code: {' '.join(bad)} (I, O, Z, S and V are never used).")
    if code[0] not in AUTHORITY_TYPES:
        raise InvalidCreditCodeError("authority", f"{code[0]} is not a registration authority code.")
    if code[1] not in AUTHORITY_TYPES[code[0]]:
        raise InvalidCreditCodeError("organisation_type",
                                     f"{code[1]} is not an organisation type registered by authority {code[0]}.")
    if not code[2:8].isdigit() or code[2:4] == "00":
        raise InvalidCreditCodeError("region", "Characters 3–8 must be a 6-digit region code.")
    if organisation_check_character(code[8:16]) != code[16]:
        raise InvalidCreditCodeError("organisation_code",
                                     "The organisation code (characters 9–17) fails its GB 11714 check character.")
    if check_character(code[:17]) != code[17]:
        raise InvalidCreditCodeError("check_character", "The last character does not match (GB 32100 MOD 31).")
    return CreditCode(code)
