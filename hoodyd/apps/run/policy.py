"""The effective run policy (config policy merged with the profile's) and its checks on a
selected candidate.

Unset booleans take hoodyd's defaults: nothing is required, and delegated execution and
redirects are allowed, because hoodyd's terminals are local (DESIGN.md, App execution).
"""

from __future__ import annotations

from hoodyd.errors import Forbidden, Reason
from hoodyd.schemas.run import Candidate, PolicyConfig
from hoodyd.schemas.run_exec import EffectivePolicy


def effective(policy: PolicyConfig) -> EffectivePolicy:
    return EffectivePolicy(
        require_verified=bool(policy.require_verified),
        require_integrity=bool(policy.require_integrity),
        allow_delegated_execution=policy.allow_delegated_execution is not False,
        allow_redirect=policy.allow_redirect is not False,
        deny_providers=policy.deny_providers or None,
        deny_source_ids=policy.deny_source_ids or None,
    )


def check_candidate(policy: EffectivePolicy, candidate: Candidate) -> None:
    """Refuse a pick the policy forbids. Denied sources are already left out of searches;
    this catches a pick from a set made before the policy changed."""
    name = candidate.candidate_id
    if candidate.provider in (policy.deny_providers or []):
        raise Forbidden(
            f"policy denies provider {candidate.provider}: {name}",
            reason=Reason.POLICY_DENIED_PROVIDER,
        )
    if candidate.source_id in (policy.deny_source_ids or []):
        raise Forbidden(
            f"policy denies source {candidate.source_id}: {name}",
            reason=Reason.POLICY_DENIED_SOURCE,
        )
    if policy.require_verified and not candidate.verified:
        raise Forbidden(
            f"policy requires a verified candidate: {name} is not verified",
            reason=Reason.POLICY_REQUIRES_VERIFIED,
        )
    if policy.require_integrity and (candidate.integrity is None or not candidate.integrity.sha256):
        raise Forbidden(
            f"policy requires integrity data (a sha256): {name} has none",
            reason=Reason.POLICY_REQUIRES_INTEGRITY,
        )
