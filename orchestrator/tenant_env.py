"""Each tenant's own environment, filled in from the inventory's templates and the tenant list."""

from __future__ import annotations

from collections.abc import Mapping

from hub.cable import placeholders
from orchestrator.model import Tenant

TENANT_FIELDS = (
    "year", "studio", "event", "database", "scope", "owner", "name", "logo", "locale", "locale_underscored", "region",
)  # fmt: skip


def tenant_fields(tenant: Tenant, default_logo: str | None) -> dict[str, str]:
    """The values a tenant has; a field it lacks (no event, no locale) is absent."""
    fields = {
        "year": str(tenant.year),
        "studio": tenant.studio,
        "event": tenant.event,
        "database": tenant.database,
        "scope": tenant.scope,
        "owner": tenant.owner,
        "name": tenant.name,
        "logo": tenant.logo or default_logo,
        "locale": tenant.locale,
        "locale_underscored": tenant.locale.replace("-", "_") if tenant.locale else None,
        "region": tenant.region,
    }
    return {name: value for name, value in fields.items() if value}


def tenant_env(templates: Mapping[str, str], fields: Mapping[str, str]) -> dict[str, str]:
    """Every template whose fields the tenant has, filled in; the others are left out."""
    env = {}
    for name, template in templates.items():
        used = placeholders(template)
        if all(field in fields for field in used):
            value = template
            for field in used:
                value = value.replace("{" + field + "}", fields[field])
            env[name] = value
    return env
