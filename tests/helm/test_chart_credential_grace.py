"""The portal chart passes the credential grace period to the portal, within bounds."""

from __future__ import annotations

import helm_python as helm
import pytest

from tests.helm.test_charts import PORTAL, objects, the


def test_the_credential_grace_period_reaches_the_portal_as_a_setting():
    default = the(objects(PORTAL), "ConfigMap")["data"]
    assert default["CONSORTIUM_CREDENTIAL_GRACE_HOURS"] == "24"
    chosen = the(objects(PORTAL, {"django": {"credentialGraceHours": 2}}), "ConfigMap")["data"]
    assert chosen["CONSORTIUM_CREDENTIAL_GRACE_HOURS"] == "2"


@pytest.mark.parametrize("hours", [-1, 721, "24"])
def test_the_schema_refuses_a_grace_period_out_of_bounds(hours):
    with pytest.raises(helm.HelmValuesError, match="credentialGraceHours"):
        objects(PORTAL, {"django": {"credentialGraceHours": hours}})
