"""S3's bucket and key naming rules, checked before any request reaches the store."""

import pytest

from s3gate.storage.names import InvalidBucketName, check_bucket


@pytest.mark.parametrize("name", ["192.168.1.1", "10.0.0.255", "1.2.3.4"])
def test_a_bucket_named_like_an_ip_address_is_refused(name):
    with pytest.raises(InvalidBucketName, match="IP address"):
        check_bucket(name)


@pytest.mark.parametrize("name", ["files", "my.bucket.1", "999.1.1.1", "1.2.3", "a1.b2.c3.d4"])
def test_other_dotted_names_are_buckets(name):
    assert check_bucket(name) == name
