"""Static reference data: NAF sections by division and regions by department."""

from __future__ import annotations

# NAF rev. 2: section letter -> (first division, last division), inclusive.
NAF_SECTIONS: dict[str, tuple[int, int]] = {
    "A": (1, 3), "B": (5, 9), "C": (10, 33), "D": (35, 35), "E": (36, 39), "F": (41, 43),
    "G": (45, 47), "H": (49, 53), "I": (55, 56), "J": (58, 63), "K": (64, 66), "L": (68, 68),
    "M": (69, 75), "N": (77, 82), "O": (84, 84), "P": (85, 85), "Q": (86, 88), "R": (90, 93),
    "S": (94, 96), "T": (97, 98), "U": (99, 99),
}

# Regions (2016 boundaries, ASCII names) -> their departments.
REGION_DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "Ile-de-France": ("75", "77", "78", "91", "92", "93", "94", "95"),
    "Centre-Val de Loire": ("18", "28", "36", "37", "41", "45"),
    "Bourgogne-Franche-Comte": ("21", "25", "39", "58", "70", "71", "89", "90"),
    "Normandie": ("14", "27", "50", "61", "76"),
    "Hauts-de-France": ("02", "59", "60", "62", "80"),
    "Grand Est": ("08", "10", "51", "52", "54", "55", "57", "67", "68", "88"),
    "Pays de la Loire": ("44", "49", "53", "72", "85"),
    "Bretagne": ("22", "29", "35", "56"),
    "Nouvelle-Aquitaine": ("16", "17", "19", "23", "24", "33", "40", "47", "64", "79", "86", "87"),
    "Occitanie": ("09", "11", "12", "30", "31", "32", "34", "46", "48", "65", "66", "81", "82"),
    "Auvergne-Rhone-Alpes": ("01", "03", "07", "15", "26", "38", "42", "43", "63", "69", "73", "74"),
    "Provence-Alpes-Cote d'Azur": ("04", "05", "06", "13", "83", "84"),
    "Corse": ("2A", "2B", "20"),
    "Guadeloupe": ("971",),
    "Martinique": ("972",),
    "Guyane": ("973",),
    "La Reunion": ("974",),
    "Mayotte": ("976",),
}

DEPARTMENT_REGION: dict[str, str] = {
    department: region for region, departments in REGION_DEPARTMENTS.items() for department in departments
}
DIVISION_SECTION: dict[str, str] = {
    f"{division:02d}": section
    for section, (low, high) in NAF_SECTIONS.items()
    for division in range(low, high + 1)
}
