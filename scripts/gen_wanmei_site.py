"""Regenerates linli/sites/wanmei.yaml (the shipped demo site) from a few layout rules.

Run once when the layout changes; the YAML file is what ships and what people edit.
"""

from pathlib import Path

import yaml

PLAN_W, PLAN_H = 1000, 700
compounds = [
    {"id": "phase1", "name": "湾美一期", "name_en": "Wanmei Phase I", "area": {"x": 40, "y": 40, "w": 400, "h": 260}},
    {"id": "phase2", "name": "湾美二期", "name_en": "Wanmei Phase II", "area": {"x": 560, "y": 40, "w": 400, "h": 260}},
    {"id": "phase3", "name": "湾美三期", "name_en": "Wanmei Phase III", "area": {"x": 40, "y": 400, "w": 400, "h": 260}},
    {"id": "phase4", "name": "湾美四期", "name_en": "Wanmei Phase IV", "area": {"x": 560, "y": 400, "w": 400, "h": 260}},
]
buildings, elevators = [], []
number = 0
for compound in compounds:
    area = compound["area"]
    for slot, cars in enumerate((2, 1)):
        number += 1
        bid = f"B{number}"
        top = (26, 18, 33, 18, 26, 11, 33, 18)[number - 1]
        buildings.append({
            "id": bid, "compound": compound["id"], "name": f"{number}号楼", "name_en": f"Building {number}",
            "lowest_floor": -1, "highest_floor": top, "rated_speed_mps": 2.5 if top > 20 else 1.75,
            "position": {"x": area["x"] + 90 + slot * 200, "y": area["y"] + 90},
        })
        for car in "AB"[:cars]:
            elevators.append({
                "id": f"EL-{number}{car}", "kind": "elevator", "name": f"{compound['name']}{number}号楼{car}梯",
                "name_en": f"Building {number} lift {car}", "building": bid,
                "position": {"x": area["x"] + 90 + slot * 200 + (0 if car == "A" else 30), "y": area["y"] + 130},
            })

cabinets = [
    {"id": "CAB-1", "name": "1号配电箱", "name_en": "Cabinet 1", "position": {"x": 470, "y": 320}, "circuits": [
        {"id": "C1", "name": "中心广场回路", "name_en": "Square circuit", "switched": False},
        {"id": "C2", "name": "东西主干道西段", "name_en": "Main road, west", "switched": True},
    ]},
    {"id": "CAB-2", "name": "2号配电箱", "name_en": "Cabinet 2", "position": {"x": 530, "y": 380}, "circuits": [
        {"id": "C3", "name": "东西主干道东段", "name_en": "Main road, east", "switched": True},
        {"id": "C4", "name": "南北主干道", "name_en": "North-south road", "switched": True},
    ]},
    {"id": "CAB-3", "name": "3号配电箱", "name_en": "Cabinet 3", "position": {"x": 240, "y": 380}, "circuits": [
        {"id": "C5", "name": "三期内部道路", "name_en": "Phase III inner road", "switched": True},
    ]},
]

lights = []


def add_lights(circuit, points, rated, label, label_en):
    for x, y in points:
        n = len(lights) + 1
        lights.append({
            "id": f"SL-{n:02d}", "kind": "streetlight", "name": f"{label}{n}号灯", "name_en": f"{label_en} light {n}",
            "circuit": circuit, "rated_power_w": rated, "position": {"x": round(x), "y": round(y)},
        })


square = [(450 + 50 * (i % 3), 320 + 30 * (i // 3)) for i in range(9)]
add_lights("C1", square, 40, "中心广场", "Square")
add_lights("C2", [(40 + 45 * i, 350) for i in range(9)], 60, "主干道西段", "Main road west")
add_lights("C3", [(600 + 45 * i, 350) for i in range(9)], 60, "主干道东段", "Main road east")
add_lights("C4", [(500, 40 + 37 * i) if i < 4 else (500, 440 + 37 * (i - 4)) for i in range(8)], 60, "南北路", "N-S road")
add_lights("C5", [(80 + 45 * i, 540) for i in range(8)], 30, "三期", "Phase III")
assert len(lights) == 43

chargers = []
for i in range(16):
    group, compound, base = ("A", "phase1", (60, 240)) if i < 8 else ("B", "phase3", (60, 600))
    chargers.append({
        "id": f"CP-{i + 1:02d}", "kind": "charger", "name": f"{group}区{i % 8 + 1}号交流桩",
        "name_en": f"AC pile {group}{i % 8 + 1}", "compound": compound, "group": group, "rated_power_kw": 7,
        "position": {"x": base[0] + 40 * (i % 8), "y": base[1]},
    })
for i in range(2):
    chargers.append({
        "id": f"CP-{17 + i}", "kind": "charger", "name": f"{i + 1}号直流快充桩", "name_en": f"DC fast pile {i + 1}",
        "compound": "phase2", "group": "DC", "rated_power_kw": 60, "position": {"x": 600 + 40 * i, "y": 240},
    })


def person(pid, name, name_en, phone, *, email=None, wecom=None):
    entry = {"id": pid, "name": name, "name_en": name_en, "phone": phone}
    entry.update({"email": email} if email else {})
    entry.update({"wecom_userid": wecom} if wecom else {})
    return entry


# Made-up people and contacts (the 138 0000 numbers are not real): who is called when a ticket is late.
PEOPLE = [
    person("zhou_zr", "周主任", "Director Zhou", "13800000001", email="zhou@wanmei.example.cn", wecom="ZhouZhuRen"),
    person("wang_jl", "王经理", "Manager Wang", "13800000011", email="wang@wanmei-wy.example.cn", wecom="WangJingLi"),
    person("li_gong", "李工", "Li (electrician)", "13800000012", wecom="LiGong"),
    person("liu_sf", "刘师傅", "Liu (electrician)", "13800000013", wecom="LiuShiFu"),
    person("zhao_sf", "赵师傅", "Zhao (night duty)", "13800000014", wecom="ZhaoShiFu"),
    person("lin_zz", "林站长", "Head Lin", "13800000021", email="lin@wanmei.example.cn", wecom="LinZhanZhang"),
    person("huang_wgy", "黄网格员", "Grid officer Huang", "13800000022", wecom="HuangWGY"),
    person("zheng_jl", "郑经理", "Manager Zheng", "13800000031", email="zheng@tongda-lift.example.cn"),
    person("wu_gong", "吴工", "Wu (lift technician)", "13800000032"),
    person("sun_gong", "孙工", "Sun (lift technician)", "13800000033"),
    person("he_jl", "何经理", "Manager He", "13800000041", email="he@chongdian.example.cn"),
    person("cp_duty", "充电桩运营值班", "Charging operator duty line", "4000000000"),
]

TEAMS = {
    "property": {
        "name": "物业工程部", "name_en": "Property crew", "lead": "wang_jl",
        "roster": [  # the duty room is staffed round the clock
            {"person": "li_gong", "days": "mon-fri", "hours": "08:00-20:00"},
            {"person": "liu_sf", "days": "sat,sun", "hours": "08:00-20:00"},
            {"person": "zhao_sf", "days": "daily", "hours": "20:00-08:00"},
        ],
        "escalation": {"remind_every": "15m", "levels": [
            {"after": "0m", "notify": ["on_duty"]},
            {"after": "15m", "notify": ["lead"]},
            {"after": "30m", "notify": ["manager", "on_duty:grid"]},
        ]},
    },
    "grid": {
        "name": "社区网格中心", "name_en": "Community grid centre", "lead": "lin_zz",
        "roster": [{"person": "huang_wgy", "days": "mon-sat", "hours": "08:30-17:30"}],  # else the head of the centre
        "escalation": {"remind_every": "30m", "levels": [
            {"after": "0m", "notify": ["on_duty"]},
            {"after": "30m", "notify": ["lead", "manager"]},
        ]},
    },
    "elevator_contractor": {
        "name": "电梯维保单位", "name_en": "Elevator maintenance contractor", "lead": "zheng_jl",
        "roster": [  # rescue within 30 minutes, day and night
            {"person": "wu_gong", "days": "daily", "hours": "08:00-20:00"},
            {"person": "sun_gong", "days": "daily", "hours": "20:00-08:00"},
        ],
        "escalation": {"remind_every": "5m", "levels": [
            {"after": "0m", "notify": ["on_duty"]},
            {"after": "10m", "notify": ["lead", "lead:property"]},
            {"after": "20m", "notify": ["manager", "on_duty:grid"]},
        ]},
    },
    "charger_operator": {
        "name": "充电桩运营商", "name_en": "Charging-pile operator", "lead": "he_jl",
        "roster": [{"person": "cp_duty", "days": "daily", "hours": "00:00-24:00"}],
        "escalation": {"remind_every": "15m", "levels": [
            {"after": "0m", "notify": ["on_duty"]},
            {"after": "15m", "notify": ["lead", "lead:property"]},
            {"after": "30m", "notify": ["manager", "on_duty:grid"]},
        ]},
    },
}

document = {
    "site": {
        "id": "wanmei", "name": "湾美社区", "name_en": "Wanmei Community", "timezone": "Asia/Shanghai",
        "coordinates": {"latitude": 26.1, "longitude": 119.3},
        "lighting_schedule": {"on_offset_min": 0, "off_offset_min": 0},
        "manager": "zhou_zr",
    },
    "plan": {"width": PLAN_W, "height": PLAN_H},
    "compounds": compounds,
    "buildings": buildings,
    "cabinets": cabinets,
    "people": PEOPLE,
    "teams": TEAMS,
    "routing": {"leakage": ["property", "grid"]},
    "sla": {
        "P0": {"ack": "5m", "start": "30m", "resolve": "24h"},
        "P1": {"ack": "1h", "start": "4h", "resolve": "24h"},
        "P2": {"ack": "24h", "resolve": "72h"},
        "P3": {"ack": "24h", "resolve": "7d"},
    },
    "devices": lights + elevators + chargers,
}
header = (
    "# 湾美社区 (Wanmei community), 参内镇, Fujian: the demo site shipped with Linli.\n"
    "# 43 streetlights on 5 circuits from 3 cabinets, 12 elevators (3 per compound), 16 AC + 2 DC chargers.\n"
    "# Format: docs/site-file.md. Regenerate with scripts/gen_wanmei_site.py or edit by hand.\n"
)
out = Path(__file__).resolve().parents[1] / "linli" / "sites" / "wanmei.yaml"
out.write_text(header + yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=120), encoding="utf-8")
print(f"wrote {out}: {len(lights)} lights, {len(elevators)} elevators, {len(chargers)} chargers")
