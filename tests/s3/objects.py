"""Test helper for tests/e2e/store.rs: create a bucket on the S3 API at
ENDPOINT, or dump every object of one (JSON list of {key, body_hex}).
Credentials from the standard AWS environment (moto accepts any)."""
import json
import sys

import boto3

endpoint, cmd, bucket = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
if cmd == "create":
    s3.create_bucket(Bucket=bucket)
elif cmd == "dump":
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            out.append({"key": o["Key"], "body_hex": body.hex()})
    json.dump(out, sys.stdout)
else:
    sys.exit(f"unknown command {cmd}")
