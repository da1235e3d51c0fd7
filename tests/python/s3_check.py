"""Remote shards against a real S3 API on this machine: moto in server mode on 127.0.0.1.

Fashion-MNIST test images are written as Parquet shards (several row groups each) and uploaded;
`actopo run` reads them through s3:// (a glob), http:// (moto serves plain GETs with ranges),
and an IDX file over s3://, and every result table must equal the run on the same files from
local disk. Then: a resumed run skips what is done and redoes an object that changed; a shard
deleted mid-run becomes a failure row while the others finish; a server that answers 503 and
slowly for a while is ridden out by retries; wrong credentials (a second moto with IAM
authentication on) stop the run with an error naming AWS_ACCESS_KEY_ID. hf:// is read from a
fake hub on 127.0.0.1 (tree API, resolve URLs, HF_TOKEN); az:// from Azurite when installed.

    tests/python/s3_check.py --bin target/release/actopo
"""

import argparse
import gzip
import http.client
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")
BUCKET = "actopo-shards"
TABLES = ("summary", "diagrams", "failures")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(tmp, name, env_extra=None):
    """A moto S3 server on a free port, waited for; the caller stops it."""
    port = free_port()
    log = open(tmp / f"{name}.log", "w")
    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"s3_check: moto did not start; see {tmp / (name + '.log')}")


def client(endpoint, service="s3", key="test", secret="test"):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret)


def read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    if data[2] == 8 and data[3] == 3:
        n, h, w = np.frombuffer(data[4:16], ">u4")
        return np.frombuffer(data[16:], np.uint8).reshape(n, h, w)
    return np.frombuffer(data[8:], np.uint8)


def write_shards(folder, shards, per_shard, row_group):
    """`shards` Parquet files of `per_shard` PNG images each (Hugging Face's image struct)."""
    images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        rows = range(s * per_shard, (s + 1) * per_shard)
        pngs = []
        for i in rows:
            buf = io.BytesIO()
            Image.fromarray(images[i]).save(buf, format="PNG")
            pngs.append({"bytes": buf.getvalue(), "path": f"{i}.png"})
        table = pa.table({"image": pngs, "label": pa.array(labels[list(rows)].astype(np.int64))})
        path = folder / f"part-{s:05d}.parquet"
        pq.write_table(table, path, row_group_size=row_group)
        paths.append(path)
    return paths


def upload(s3, files, prefix):
    for f in files:
        s3.upload_file(str(f), BUCKET, f"{prefix}/{f.name}")


class Faults:
    """What the proxy does to requests: 503s, delays, and a delete triggered by a first read."""

    def __init__(self):
        self.lock = threading.Lock()
        self.fail_next = 0       # answer this many requests with 503 SlowDown
        self.delay_next = 0      # hold this many requests `delay` seconds first
        self.delay = 0.0
        self.delete_on_read = None  # (key read, key to delete, s3 client), once
        self.served_503 = 0
        self.delayed = 0

    def take(self, path):
        with self.lock:
            action = None
            if self.fail_next > 0:
                self.fail_next -= 1
                self.served_503 += 1
                action = "503"
            elif self.delay_next > 0:
                self.delay_next -= 1
                self.delayed += 1
                action = "delay"
            trigger = self.delete_on_read
            if trigger and path.split("?")[0].endswith(trigger[0]):
                self.delete_on_read = None
            else:
                trigger = None
        if trigger:
            trigger[2].delete_object(Bucket=BUCKET, Key=trigger[1])
        return action


def start_proxy(upstream, faults):
    """An HTTP proxy in front of moto that applies `faults`; returns (server, endpoint)."""
    host, port = upstream.removeprefix("http://").split(":")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            action = faults.take(self.path)
            if action == "503":
                payload = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                self.send_response(503)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if action == "delay":
                time.sleep(faults.delay)
            conn = http.client.HTTPConnection(host, int(port), timeout=60)
            conn.request(self.command, self.path, body=body, headers=dict(self.headers))
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(k, v)
            # A HEAD answer has no body but the object's length.
            length = resp.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def s3_env(endpoint, key="test", secret="test"):
    env = dict(os.environ)
    for k in [k for k in env if k.startswith("AWS_")]:
        del env[k]
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true", AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
    return env


def run(bin_, shards, out, env=None, limit=0, extra=()):
    cmd = [bin_, "run", str(ROOT / "config/fashion-mnist.toml"),
           "--set", "data.shards=" + json.dumps(shards), "--set", f'output.dir="{out}"',
           "--set", f"data.limit={limit}", "--set", "pipeline.workers=2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env or os.environ)


def must(result, what):
    if result.returncode != 0:
        raise SystemExit(f"s3_check: {what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def tables(out):
    """{(table, file name): pyarrow table} for every result file of a run."""
    found = {}
    for t in TABLES:
        for f in sorted((Path(out) / t).glob("*.parquet")):
            found[(t, f.name)] = pq.read_table(f)
    return found


def same_tables(a, b, what):
    ta, tb = tables(a), tables(b)
    if ta.keys() != tb.keys():
        raise SystemExit(f"s3_check: {what}: files differ: {sorted(ta)} vs {sorted(tb)}")
    rows = 0
    for k in ta:
        if not ta[k].equals(tb[k]):
            raise SystemExit(f"s3_check: {what}: {k} differs from the local run")
        rows += ta[k].num_rows
    print(f"  {what}: {len(ta)} files, {rows} rows, identical to the local run")


def manifest(out):
    return json.loads((Path(out) / "manifest.json").read_text())


def check_remote_equals_local(bin_, tmp, s3, local, endpoint):
    env = s3_env(endpoint)
    must(run(bin_, [str(p) for p in local], tmp / "local"), "local run")
    must(run(bin_, [f"s3://{BUCKET}/fmnist/*.parquet"], tmp / "s3", env), "s3:// glob run")
    same_tables(tmp / "local", tmp / "s3", "s3:// glob")
    shards = manifest(tmp / "s3")["shards"]
    assert [s["path"] for s in shards] == [f"s3://{BUCKET}/fmnist/{p.name}" for p in local], shards
    files = [s["source"]["files"][0] for s in shards]
    assert all(f["etag"] and f["path"].startswith("s3://") for f in files), files
    print(f"  manifest: URLs and ETags recorded ({files[0]['path']} etag {files[0]['etag']})")
    for p in local:  # anonymous GETs need a public object
        s3.put_object_acl(Bucket=BUCKET, Key=f"fmnist/{p.name}", ACL="public-read")
    http_urls = [f"{endpoint}/{BUCKET}/fmnist/{p.name}" for p in local]
    must(run(bin_, http_urls, tmp / "http"), "http:// run")
    same_tables(tmp / "local", tmp / "http", "http:// (plain GETs with ranges)")
    refused = run(bin_, [f"{endpoint}/{BUCKET}/fmnist/*.parquet"], tmp / "http-glob")
    assert refused.returncode != 0 and "cannot be listed" in refused.stderr, refused.stderr
    print("  http:// glob: refused with a clear error")


def check_idx_over_s3(bin_, tmp, s3, endpoint):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        s3.upload_file(str(FASHION / name), BUCKET, f"idx/{name}")
    must(run(bin_, [str(FASHION / "t10k-images-idx3-ubyte.gz")], tmp / "idx-local", limit=200), "local IDX")
    must(run(bin_, [f"s3://{BUCKET}/idx/t10k-images-idx3-ubyte.gz"], tmp / "idx-s3", s3_env(endpoint),
             limit=200), "IDX over s3://")
    same_tables(tmp / "idx-local", tmp / "idx-s3", "IDX over s3:// (fetched whole, with labels)")


def check_resume(bin_, tmp, s3, endpoint, local):
    env = s3_env(endpoint)
    again = must(run(bin_, [f"s3://{BUCKET}/fmnist/*.parquet"], tmp / "s3", env), "resumed run")
    before = manifest(tmp / "s3")
    changed = local[1]
    s3.upload_file(str(local[0]), BUCKET, f"fmnist/{changed.name}")  # new content, same key
    redo = must(run(bin_, [f"s3://{BUCKET}/fmnist/*.parquet"], tmp / "s3", env), "run after a change")
    url = f"s3://{BUCKET}/fmnist/{changed.name}"
    said = redo.stdout + redo.stderr
    assert f"{url} changed since it was processed" in said, said
    after = manifest(tmp / "s3")
    etags = [s["source"]["files"][0]["etag"] for s in (before["shards"][1], after["shards"][1])]
    assert etags[0] != etags[1], etags
    print(f"  resume: unchanged objects skipped; the overwritten {changed.name} noticed and redone "
          f"(ETag {etags[0]} -> {etags[1]})")
    s3.upload_file(str(changed), BUCKET, f"fmnist/{changed.name}")  # put it back
    return again


def check_deleted_mid_run(bin_, tmp, s3, faults, proxy, local):
    gone = f"fmnist/{local[-1].name}"
    faults.delete_on_read = (f"fmnist/{local[0].name}", gone, s3)
    result = run(bin_, [f"s3://{BUCKET}/fmnist/*.parquet"], tmp / "deleted", s3_env(proxy))
    assert result.returncode == 1, (result.returncode, result.stderr)
    shards = manifest(tmp / "deleted")["shards"]
    status = {s["name"]: s["status"] for s in shards}
    assert status == {p.name: ("failed" if p == local[-1] else "done") for p in local}, status
    failures = pq.read_table(tmp / "deleted" / "failures" / f"{local[-1].stem}.parquet").to_pylist()
    assert len(failures) == 1 and "no such object" in failures[0]["error"], failures
    print(f"  deleted mid-run: {local[-1].name} -> 1 failure row ({failures[0]['error'][:90]}...), "
          f"the other {len(local) - 1} shards done")
    s3.upload_file(str(local[-1]), BUCKET, gone)


def check_flaky_server(bin_, tmp, faults, proxy):
    with faults.lock:
        faults.fail_next, faults.delay_next, faults.delay = 6, 6, 1.5
    start = time.time()
    must(run(bin_, [f"s3://{BUCKET}/fmnist/*.parquet"], tmp / "flaky", s3_env(proxy)), "run through 503s")
    same_tables(tmp / "local", tmp / "flaky", "503s and slow answers")
    assert faults.served_503 == 6 and faults.delayed == 6, (faults.served_503, faults.delayed)
    print(f"  flaky server: {faults.served_503} answers of 503 SlowDown and {faults.delayed} delayed "
          f"{faults.delay} s, ridden out by retries ({time.time() - start:.1f} s)")


def check_credentials(bin_, tmp, local):
    """A second moto with IAM authentication: the right key reads, a wrong one is refused."""
    setup_calls = 3 + len(local) + 3  # bucket, user, key, policy, uploads (and a margin)
    proc, endpoint = start_moto(tmp, "moto-auth", {"INITIAL_NO_AUTH_ACTION_COUNT": str(setup_calls)})
    try:
        anon = client(endpoint)
        anon.create_bucket(Bucket=BUCKET)
        iam = client(endpoint, "iam")
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        iam.put_user_policy(UserName="reader", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        upload(anon, local, "fmnist")
        bad = client(endpoint, key="AKIAWRONGWRONGWRONG1", secret="wrong")
        for _ in range(10):  # use up what is left of the unauthenticated calls
            try:
                bad.head_bucket(Bucket=BUCKET)
            except Exception:
                break
        else:
            raise SystemExit("s3_check: moto never turned authentication on")
        url = [f"s3://{BUCKET}/fmnist/*.parquet"]
        good = must(run(bin_, url, tmp / "auth-good", s3_env(endpoint, key["AccessKeyId"], key["SecretAccessKey"])),
                    "run with the right key")
        same_tables(tmp / "local", tmp / "auth-good", "authenticated server, right key")
        wrong = run(bin_, url, tmp / "auth-wrong", s3_env(endpoint, "AKIAWRONGWRONGWRONG1", "wrong"))
        assert wrong.returncode != 0, wrong
        assert "AWS_ACCESS_KEY_ID" in wrong.stderr and "access refused" in wrong.stderr, wrong.stderr
        first = next(l for l in wrong.stderr.splitlines() if "access refused" in l).strip()
        hint = wrong.stderr[wrong.stderr.index("check AWS_ACCESS_KEY_ID"):].splitlines()[0]
        print(f"  wrong credentials: exit {wrong.returncode}: {first[:110]} ... {hint[:90]}...")
        return good
    finally:
        proc.terminate()
        proc.wait()


def start_fake_hub(files, repo, token):
    """A tiny stand-in for the Hugging Face hub on 127.0.0.1: the tree API and `resolve/main` file
    URLs (HEAD, ranged GETs) for `files` under `data/`, each request needing `Bearer <token>`."""
    import email.utils
    import hashlib

    blobs = {f"data/{f.name}": f.read_bytes() for f in files}
    tree = f"/api/datasets/{repo}/tree/main/data"
    resolve = f"/datasets/{repo}/resolve/main/"

    class Hub(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, body=b"", headers=()):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            if self.headers.get("Authorization") != f"Bearer {token}":
                return self.reply(401, b"Invalid credentials")
            path = self.path.split("?")[0]
            if path == tree:
                listing = [{"type": "file", "path": k, "size": len(v)} for k, v in blobs.items()]
                return self.reply(200, json.dumps(listing).encode(), [("Content-Type", "application/json")])
            blob = blobs.get(path.removeprefix(resolve)) if path.startswith(resolve) else None
            if blob is None:
                return self.reply(404, b"Entry not found")
            meta = [("ETag", '"' + hashlib.sha256(blob).hexdigest() + '"'),
                    ("Last-Modified", email.utils.formatdate(0, usegmt=True)), ("Accept-Ranges", "bytes")]
            spec = self.headers.get("Range")
            if not spec:
                return self.reply(200, blob, meta)
            first, last = spec.removeprefix("bytes=").split("-")
            if first == "":
                first, last = len(blob) - int(last), len(blob) - 1
            first, last = int(first), min(int(last or len(blob) - 1), len(blob) - 1)
            meta.append(("Content-Range", f"bytes {first}-{last}/{len(blob)}"))
            return self.reply(206, blob[first:last + 1], meta)

        do_HEAD = do_GET

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def check_fake_hub(bin_, tmp, local):
    """hf:// through HF_ENDPOINT: the glob listed by the tree API, files by resolve URLs, HF_TOKEN."""
    server, endpoint = start_fake_hub(local, "someone/fmnist", "hf_right")
    try:
        env = dict(os.environ, HF_ENDPOINT=endpoint, HF_TOKEN="hf_right")
        url = ["hf://datasets/someone/fmnist/data/part-*.parquet"]
        must(run(bin_, url, tmp / "hf", env), "hf:// run on the fake hub")
        same_tables(tmp / "local", tmp / "hf", "hf:// (fake hub: tree API, resolve URLs, HF_TOKEN)")
        wrong = run(bin_, url, tmp / "hf-wrong", dict(env, HF_TOKEN="hf_wrong"))
        assert wrong.returncode != 0 and "HF_TOKEN" in wrong.stderr, wrong.stderr
        print("  hf:// with a wrong HF_TOKEN: refused, naming HF_TOKEN")
    finally:
        server.shutdown()


def check_azurite(bin_, tmp, local, azurite):
    """az:// against Azurite (Microsoft's Azure Storage emulator, from npm; scripts/setup.sh
    --azurite) with the azure-storage-blob package for the upload. Given with --azurite PATH (as
    scripts/test.sh does), a missing Azurite fails the check; without it, the check says it was
    skipped and counts nothing."""
    import shutil
    exe = azurite or shutil.which("azurite-blob")
    try:
        from azure.storage.blob import BlobServiceClient
    except ImportError:
        if azurite:
            sys.exit("s3_check: azure-storage-blob is not installed; fix: scripts/setup.sh (scripts/requirements.txt)")
        exe = None
    if azurite and not os.access(azurite, os.X_OK):
        sys.exit(f"s3_check: no Azurite at {azurite}; fix: scripts/setup.sh --azurite")
    if not exe:
        print("  az://: skipped (needs azurite-blob, `scripts/setup.sh --azurite`, and azure-storage-blob)")
        return
    port = free_port()
    log = open(tmp / "azurite.log", "w")
    proc = subprocess.Popen([exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
                             str(tmp / "azurite"), "--skipApiVersionCheck", "--silent"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        # Azurite's documented development account and key.
        key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
        blob = BlobServiceClient.from_connection_string(
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key};"
            f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
        container = blob.create_container(BUCKET)
        for p in local:
            container.upload_blob(f"fmnist/{p.name}", p.read_bytes())
        env = dict(os.environ, AZURE_STORAGE_USE_EMULATOR="true", AZURITE_BLOB_STORAGE_URL=f"http://127.0.0.1:{port}")
        must(run(bin_, [f"az://{BUCKET}/fmnist/*.parquet"], tmp / "az", env), "az:// run on Azurite")
        same_tables(tmp / "local", tmp / "az", "az:// (Azurite)")
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=str(ROOT / "target/release/actopo"))
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--per-shard", type=int, default=100)
    ap.add_argument("--azurite", help="azurite-blob executable for the optional az:// check (default: on PATH)")
    args = ap.parse_args()
    bin_ = str(Path(args.bin).resolve())
    with tempfile.TemporaryDirectory(prefix="actopo-s3-") as tmp:
        tmp = Path(tmp)
        moto, endpoint = start_moto(tmp, "moto")
        proxy_server = None
        try:
            print(f"== remote shards: moto S3 at {endpoint}")
            local = write_shards(tmp / "shards", args.shards, args.per_shard, row_group=40)
            s3 = client(endpoint)
            s3.create_bucket(Bucket=BUCKET)
            upload(s3, local, "fmnist")
            check_remote_equals_local(bin_, tmp, s3, local, endpoint)
            check_idx_over_s3(bin_, tmp, s3, endpoint)
            check_resume(bin_, tmp, s3, endpoint, local)
            faults = Faults()
            proxy_server, proxy = start_proxy(endpoint, faults)
            check_deleted_mid_run(bin_, tmp, s3, faults, proxy, local)
            check_flaky_server(bin_, tmp, faults, proxy)
            check_credentials(bin_, tmp, local)
            check_fake_hub(bin_, tmp, local)
            check_azurite(bin_, tmp, local, args.azurite)
        finally:
            if proxy_server:
                proxy_server.shutdown()
            moto.terminate()
            moto.wait()
    print("s3_check: ok")


if __name__ == "__main__":
    main()
