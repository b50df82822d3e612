"""Legal holds: placing and lifting are logged, a second hold for the same case is refused."""

from __future__ import annotations

import pytest

from auditlog.errors import RetentionRefused
from auditlog.retention.policies import Retention
from tests.support.retention import (
    LEAD,
    LEAD2,
    events,
)


def test_placing_and_lifting_a_hold_are_logged(ret: Retention) -> None:
    ret.place_hold(LEAD, "compliance_lead", "governance", "Contoso v. Fabrikam", "litigation")
    with pytest.raises(RetentionRefused, match="already on legal hold"):
        ret.place_hold(LEAD, "compliance_lead", "governance", "Contoso v. Fabrikam", "again")
    assert [h.case_name for h in ret.holds()] == ["Contoso v. Fabrikam"]
    ret.lift_hold(LEAD2, "compliance_lead", "governance", "Contoso v. Fabrikam", "settled")
    assert ret.holds() == []
    (placed,) = events(ret.engine, "retention.legal_hold_placed")
    (lifted,) = events(ret.engine, "retention.legal_hold_lifted")
    assert placed["details"]["case_name"] == "Contoso v. Fabrikam"
    assert (placed["after"], lifted["after"]) == ({"held": True}, {"held": False})
    assert lifted["details"]["reason"] == "settled"
