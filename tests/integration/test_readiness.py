"""/readyz against a real SeaweedFS that refuses the gateway's credentials: 503, never 502 (issue 7, item 23)."""

import pytest

from tests.integration.helpers import curl

pytestmark = pytest.mark.integration


async def test_readyz_is_503_when_the_store_refuses_the_credentials(start_gateway, tmp_path):
    gw = await start_gateway(s3_secret_key="not-the-secret")
    res = await curl(gw.url("/readyz"), tmp=tmp_path)
    assert res.status == 503, res.text
    assert "storage" in res.text and "Traceback" not in res.text
    healthy = await curl(gw.url("/healthz"), tmp=tmp_path)
    assert healthy.status == 200  # the store is up; only readiness depends on using it


async def test_readyz_is_200_with_the_right_credentials(gateway, tmp_path):
    assert (await curl(gateway.url("/readyz"), tmp=tmp_path)).status == 200
