#!/usr/bin/env python3
"""Builds Karo's container image without a registry: `make image`.

The published image (Dockerfile) is the release binary on distroless cc-debian12.
This builds the same image from the same parts, taken from this Debian 12 machine's
own packages instead of a base image: glibc and libgcc (as cc-debian12 carries them),
CA certificates, time zones, netbase, os-release, the nonroot user 65532, then
/karo. The result is a docker-archive tarball that `ctr images import` and
`docker load` accept.

    tests/platform/image.py BINARY OUTPUT.tar REFERENCE

The last line printed is the image reference.
"""
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

# What distroless cc-debian12 holds, as Debian 12 packages: base-debian12 is
# libc6, ca-certificates, tzdata, netbase and base-files' os-release; cc adds libgcc.
PACKAGES = ["libc6", "libgcc-s1", "tzdata", "netbase"]
# Files generated at install time rather than shipped in a package.
GENERATED = ["/etc/ssl/certs/ca-certificates.crt"]
NONROOT = 65532

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = f"root:x:0:\nnobody:x:65534:\nnonroot:x:{NONROOT}:\n"
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n"


def package_files(package):
    """The files and symlinks a Debian package installed, as absolute paths."""
    out = subprocess.check_output(["dpkg", "-L", package], text=True)
    paths = []
    for line in out.splitlines():
        path = line.strip()
        if not path.startswith("/") or path == "/.":
            continue
        # Documentation, manuals and locales are not part of a distroless image.
        if path.startswith(("/usr/share/doc", "/usr/share/man", "/usr/share/lintian", "/usr/share/locale")):
            continue
        if os.path.isdir(path):
            continue  # directories (and links to them) come with their files
        if os.path.islink(path) or os.path.isfile(path):
            paths.append(path)
    return paths


def canonical(path):
    """`path` with its directory resolved: Debian 12 merges /lib into /usr/lib,
    so a package's /lib/x86_64-linux-gnu/libc.so.6 is /usr/lib/x86_64-linux-gnu/libc.so.6."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


class Layer:
    """One image layer, written as a tar with its parent directories."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.seen = set()

    def _info(self, name, uid=0):
        info = tarfile.TarInfo(name)
        info.uid = info.gid = uid
        info.mtime = 0  # reproducible
        return info

    def directory(self, name, mode=0o755, uid=0):
        name = name.strip("/")
        if not name or name in self.seen:
            return
        self.directory(os.path.dirname(name))
        info = self._info(name, uid)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        self.tar.addfile(info)
        self.seen.add(name)

    def file(self, name, data, mode=0o644):
        name = name.strip("/")
        if name in self.seen:
            return
        self.directory(os.path.dirname(name))
        info = self._info(name)
        info.size = len(data)
        info.mode = mode
        self.tar.addfile(info, io.BytesIO(data))
        self.seen.add(name)

    def link(self, name, target):
        name = name.strip("/")
        if name in self.seen:
            return
        self.directory(os.path.dirname(name))
        info = self._info(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        self.tar.addfile(info)
        self.seen.add(name)

    def copy(self, path):
        """A file or symlink of this machine, at the same (canonical) path in the image."""
        name = canonical(path).strip("/")
        if name in self.seen:
            return
        if os.path.islink(path):
            self.link(name, os.readlink(path))
        else:
            with open(path, "rb") as f:
                self.file(name, f.read(), os.stat(path).st_mode & 0o7777)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def build(binary, reference):
    base = Layer()
    # The merged-/usr links of Debian 12 (and of distroless debian12).
    for top in ["bin", "sbin", "lib", "lib64"]:
        if os.path.islink("/" + top):
            base.link(top, os.readlink("/" + top))
    for package in PACKAGES:
        for path in package_files(package):
            base.copy(path)
    for path in GENERATED:
        base.copy(path)
    # /usr/lib/os-release of base-files, where /etc/os-release points.
    base.copy("/usr/lib/os-release")
    base.copy("/etc/os-release")
    base.file("etc/passwd", PASSWD.encode())
    base.file("etc/group", GROUP.encode())
    base.file("etc/nsswitch.conf", NSSWITCH.encode())
    base.directory("tmp", 0o1777)
    base.directory("home/nonroot", 0o700, NONROOT)

    app = Layer()
    with open(binary, "rb") as f:
        app.file("karo", f.read(), 0o755)

    layers = [base.bytes(), app.bytes()]
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": f"{NONROOT}:{NONROOT}",
            "ExposedPorts": {"8080/tcp": {}, "9443/tcp": {}},
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
            ],
            "Entrypoint": ["/karo"],
            "Cmd": ["run"],
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created_by": "Debian 12 runtime: " + ", ".join(PACKAGES + ["ca-certificates", "base-files"])},
            {"created_by": "COPY karo /karo"},
        ],
    }
    config_json = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_json).hexdigest() + ".json"
    layer_names = [d.split(":")[1] + "/layer.tar" for d in diff_ids]
    manifest = [{"Config": config_name, "RepoTags": [reference], "Layers": layer_names}]
    return layers, layer_names, config_name, config_json, manifest


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: tests/platform/image.py BINARY OUTPUT.tar REFERENCE")
    binary, output, reference = sys.argv[1:]
    layers, layer_names, config_name, config_json, manifest = build(binary, reference)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = output + ".tmp"
    with tarfile.open(tmp, "w") as out:
        entries = list(zip(layer_names, layers))
        entries += [(config_name, config_json), ("manifest.json", json.dumps(manifest).encode())]
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            out.addfile(info, io.BytesIO(data))
    os.replace(tmp, output)
    size = os.path.getsize(output) / (1024 * 1024)
    print(f"image: {output} ({size:.1f} MiB)", file=sys.stderr)
    print(reference)


if __name__ == "__main__":
    main()
