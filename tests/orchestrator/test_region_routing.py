"""What every rendered region does with requests, judged by a model of Navigator's own dispatch.

Each region of an environment must serve exactly its own tenants (plus the
index and its demo), send every path of every other region there, and leave
nothing that belongs elsewhere to the local index tenant.
"""

from __future__ import annotations

import pytest

from orchestrator.inventory import load_inventory
from tests.orchestrator.conftest import SHOWCASE_INVENTORY, copy_showcase, region_config, rendered, showcase_with_anycable_image
from tests.orchestrator.navigator_model import NavigatorModel, Outcome

INVENTORY = load_inventory(SHOWCASE_INVENTORY)
PRODUCTION = INVENTORY.environments["production"].regions


@pytest.fixture(scope="module")
def production() -> dict[str, str]:
    return rendered(SHOWCASE_INVENTORY, mode="integrated")


@pytest.fixture(scope="module")
def models(production) -> dict[str, NavigatorModel]:
    return {region: NavigatorModel.from_config(region_config(production, region)) for region in PRODUCTION}


@pytest.mark.parametrize("region", PRODUCTION)
def test_a_region_loads_without_navigator_dropping_a_rule(models, region):
    assert models[region].skipped_patterns == ()


@pytest.mark.parametrize("region", PRODUCTION)
def test_a_region_serves_exactly_its_own_tenants_the_index_and_its_demo(models, region):
    served = {tenant.path for tenant in models[region].tenants}
    own = {tenant.path("/showcase") for tenant in INVENTORY.tenants_in(region)}
    assert served == own | {"/showcase/", f"/showcase/regions/{region}/demo/"}
    for tenant in INVENTORY.tenants_in(region):
        outcome = models[region].dispatch(tenant.path("/showcase") + "heats", authenticated=True)
        assert (outcome.kind, outcome.tenant.path) == ("tenant", tenant.path("/showcase"))
        assert outcome.tenant.env["RAILS_APP_SCOPE"] == tenant.scope
        assert outcome.tenant.env["DATABASE_URL"] == f"sqlite3:///data/db/{tenant.database}.sqlite3"


@pytest.mark.parametrize("region", PRODUCTION)
def test_every_path_of_the_other_regions_is_replayed_there(models, region):
    model = models[region]
    for tenant in INVENTORY.tenants.events:
        if tenant.region == region:
            continue
        replay = Outcome("replay", f"region={tenant.region}", 307)
        assert model.dispatch(tenant.path("/showcase") + "heats", authenticated=True) == replay, tenant.scope
        if not tenant.has_events:
            # The studio path without its trailing slash would otherwise reach the local index tenant.
            assert model.dispatch(tenant.path("/showcase").rstrip("/"), authenticated=True) == replay, tenant.scope
    for other in set(PRODUCTION) - {region}:
        replay = Outcome("replay", f"region={other}", 307)
        assert model.dispatch(f"/showcase/regions/{other}/cable") == replay
        assert model.dispatch(f"/showcase/regions/{other}/demo/people") == replay


@pytest.mark.parametrize("region", PRODUCTION)
def test_a_region_s_own_cable_and_demo_are_local_and_public(models, region):
    model = models[region]
    assert model.dispatch(f"/showcase/regions/{region}/cable") == Outcome("cable")
    demo = model.dispatch(f"/showcase/regions/{region}/demo/people")
    assert (demo.kind, demo.tenant.env["DATABASE_URL"]) == ("tenant", "sqlite3:///demo/db/demo.sqlite3")


@pytest.mark.parametrize("region", PRODUCTION)
def test_prerendered_studio_indexes_stay_local_and_public(models, region):
    for tenant in INVENTORY.tenants.events:
        if tenant.has_events:
            index = f"/showcase/{tenant.year}/{tenant.studio}/"
            assert models[region].is_public(index), index
            assert models[region].dispatch(index, authenticated=True).kind != "replay", index


@pytest.mark.parametrize("mode", ["action_cable", "anycable", "hub"])
def test_the_cable_path_goes_to_the_cable_server_in_the_other_modes(tmp_path, mode):
    model = NavigatorModel.from_config(region_config(rendered(showcase_with_anycable_image(tmp_path), mode=mode)))
    outcome = model.dispatch("/showcase/regions/ord/cable", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert (outcome.kind, outcome.target, outcome.websocket) == ("proxy", "ws://localhost:28080/showcase/regions/ord/cable", True)
    assert model.dispatch("/showcase/regions/iad/cable") == Outcome("replay", "region=iad", 307)


def test_in_hub_mode_navigator_proxies_the_cable_path_only_never_the_hub_s_broadcast_path(tmp_path):
    model = NavigatorModel.from_config(region_config(rendered(showcase_with_anycable_image(tmp_path), mode="hub")))
    assert not model.cable_enabled  # Navigator's own cable would answer the path before any proxy
    for path in ("/_broadcast", "/showcase/regions/ord/cable/x", "/showcase/regions/ord/_broadcast"):
        outcome = model.dispatch(path, "POST", authenticated=True, remote_addr="127.0.0.1")
        assert "28080" not in (outcome.target or ""), (path, outcome)


def test_a_public_index_tenant_needs_no_login_anywhere_below_it(models, tmp_path):
    assert not models["ord"].is_public("/showcase/anything/at/all")
    inventory = showcase_with_anycable_image(tmp_path, ("    database: index\n", "    database: index\n    public: true\n"))
    assert NavigatorModel.from_config(region_config(rendered(inventory))).is_public("/showcase/anything/at/all")


def test_the_generator_makes_the_cable_path_public_whatever_public_paths_says(tmp_path):
    """Showcase's own public_paths already cover /showcase/regions/: without them, the cable path must stay public."""
    inventory = copy_showcase(tmp_path, ("      - /showcase/cable\n", ""), ("      - /showcase/regions/\n", ""))
    config = region_config(rendered(inventory, mode="integrated"), "ord")
    assert not any(path.startswith(("/showcase/regions", "/showcase/cable")) for path in config["auth"]["public_paths"])
    model = NavigatorModel.from_config(config)
    assert model.is_public("/showcase/regions/ord/cable")
    assert model.dispatch("/showcase/regions/ord/cable") == Outcome("cable")
