"""The Showcase importer, checked against the real showcases.yml."""

from __future__ import annotations

import re
from collections import Counter

from orchestrator.inventory import load_inventory
from orchestrator.tenants import load_showcases
from tests.orchestrator.conftest import SHOWCASE_INVENTORY, SHOWCASES_FILE

# Studios (one per year) and events per region, as Showcase's own docs count them.
STUDIOS_PER_REGION = {"iad": 41, "sjc": 28, "ord": 24, "dfw": 18, "ewr": 15, "ams": 11, "syd": 8, "nrt": 1}


def test_studio_counts_per_region_match_the_file():
    tenants = load_showcases(SHOWCASES_FILE)[0]
    studios = Counter(region for _, _, region in {(t.year, t.studio, t.region) for t in tenants})
    counted_in_text = Counter(re.findall(r"^    :region: ([a-z]{3})$", SHOWCASES_FILE.read_text(), re.MULTILINE))
    assert studios == counted_in_text
    assert studios == STUDIOS_PER_REGION


def test_every_event_becomes_one_tenant():
    tenants = load_showcases(SHOWCASES_FILE)[0]
    assert len(tenants) == 369
    assert len({t.database for t in tenants}) == 369, "two tenants share a database"


def test_studio_without_events_is_a_single_tenant_at_the_studio_path():
    tenants = {t.database: t for t in load_showcases(SHOWCASES_FILE)[0]}
    pinehurst = tenants["2026-pinehurst"]
    assert (pinehurst.event, pinehurst.region, pinehurst.name) == (None, "iad", "Pinehurst")
    assert pinehurst.path("/showcase") == "/showcase/2026/pinehurst/"


def test_event_tenant_paths_and_names():
    tenants = {t.database: t for t in load_showcases(SHOWCASES_FILE)[0]}
    gala = tenants["2026-clearwater-glass-slipper-gala"]
    assert gala.path("/showcase") == "/showcase/2026/clearwater/glass-slipper-gala/"
    assert gala.name == "Clearwater: Glass Slipper Gala"
    assert tenants["2026-livermore-lot-s-of-love-medal-ball"].name == "Livermore: \"Lot's of Love\" Medal Ball"


def test_inventory_assigns_tenants_to_their_region():
    inventory = load_inventory(SHOWCASE_INVENTORY)
    per_region = {code: len(inventory.tenants_in(code)) for code in inventory.regions}
    assert sum(per_region.values()) == 369
    assert per_region["nrt"] == len([t for t in load_showcases(SHOWCASES_FILE)[0] if t.region == "nrt"])
    assert per_region == {"ams": 62, "dfw": 48, "ewr": 27, "iad": 78, "nrt": 5, "ord": 56, "sjc": 72, "syd": 21}


def test_logo_and_locale_come_from_the_studio():
    tenants = {t.database: t for t in load_showcases(SHOWCASES_FILE)[0]}
    adelaide = tenants["2025-adelaide-northside"]
    assert (adelaide.owner, adelaide.locale, adelaide.logo, adelaide.has_events) == ("Adelaide", "en-AU", None, True)
    nashville = tenants["2025-nashville-fall-ball"]
    assert (nashville.logo, nashville.locale) == ("nashville.jpg", None)
    assert tenants["2026-pinehurst"].has_events is False


def test_104_tenants_are_not_english_as_showcase_counts_them():
    tenants = load_showcases(SHOWCASES_FILE)[0]
    assert sum(1 for t in tenants if t.locale) == 104
