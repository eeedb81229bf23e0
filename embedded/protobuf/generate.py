#!/usr/bin/env python3
"""Regenerates messages.txt, Skiff's table of Kubernetes protobuf message facts.

Reads, at generation time only, the upstream `generated.proto` files (field numbers and
wire types) and the Go type definitions next to them (JSON names, omitempty/omitzero,
pointers, inline embedding) from local git mirrors, joins them on (message, field number)
and writes one compact line per field. Nothing upstream is copied into the repository:
only the resulting facts table is committed.

Usage: generate.py MIRROR_DIR > messages.txt
where MIRROR_DIR holds bare-ish clones named kubernetes+api, kubernetes+apimachinery,
kubernetes+apiextensions-apiserver, kubernetes+kube-aggregator (each with a `repo` git dir).
"""

import re
import subprocess
import sys

# (mirror, tag, package dir, alias, api group or None when not an API group)
API_TAG = "v0.35.7"
AGG_TAG = "v0.35.6"


def sources(mirror):
    out = []
    api = f"{mirror}/kubernetes+api/repo"
    files = git(api, "ls-tree", "-r", "--name-only", API_TAG).split("\n")
    for f in sorted(files):
        m = re.fullmatch(r"([a-z0-9]+)/(v[0-9]+)/generated\.proto", f)
        if m:
            out.append((api, API_TAG, f"{m[1]}/{m[2]}", f"{m[1]}/{m[2]}", True))
    mach = f"{mirror}/kubernetes+apimachinery/repo"
    out.append((mach, API_TAG, "pkg/apis/meta/v1", "meta/v1", True))
    out.append((mach, API_TAG, "pkg/runtime", "runtime", False))
    out.append((mach, API_TAG, "pkg/runtime/schema", "schema", False))
    out.append((mach, API_TAG, "pkg/api/resource", "resource", False))
    out.append((mach, API_TAG, "pkg/util/intstr", "intstr", False))
    ext = f"{mirror}/kubernetes+apiextensions-apiserver/repo"
    out.append((ext, API_TAG, "pkg/apis/apiextensions/v1", "apiextensions/v1", True))
    agg = f"{mirror}/kubernetes+kube-aggregator/repo"
    out.append((agg, AGG_TAG, "pkg/apis/apiregistration/v1", "apiregistration/v1", True))
    return out


# Messages whose JSON form is not their fields (custom MarshalJSON upstream).
SPECIAL = {
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "microtime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "rawjson",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "rawjson",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "quantity",
    "k8s.io.apimachinery.pkg.api.resource.QuantityValue": "quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "intorstring",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON": "rawjson",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray": "orarray",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool": "orbool",
    "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray": "orstringarray",
}

SCALARS = {"string", "bool", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
           "double", "float", "bytes", "fixed32", "fixed64", "sfixed32", "sfixed64"}


def git(repo, *args):
    return subprocess.run(["git", "--git-dir", repo, *args], check=True,
                          capture_output=True, text=True).stdout


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"^\s*//.*$", "", line) for line in text.split("\n"))


def parse_proto(text):
    text = strip_comments(text)
    package = re.search(r"^package ([\w.]+);", text, re.M)[1]
    messages = {}
    for m in re.finditer(r"^message (\w+) \{(.*?)^\}", text, re.M | re.S):
        fields = []
        for f in re.finditer(
                r"^\s*(?:(optional|repeated|required) )?(map<\s*\w+\s*,\s*[\w.]+\s*>|[\w.]+) (\w+) = (\d+)",
                m[2], re.M):
            label, typ, name, num = f[1], f[2], f[3], int(f[4])
            fields.append((num, label, typ.replace(" ", ""), name))
        messages[m[1]] = fields
    return package, messages


GO_FIELD = re.compile(r"^\s*(?:(\w+)\s+)?([\w.*\[\]]+(?:\[[\w.*]+\][\w.*\[\]]+)?)\s+`([^`]*)`")


def parse_go(texts):
    structs, named = {}, {}
    for text in texts:
        text = strip_comments(text)
        for m in re.finditer(r"^type (\w+) struct \{(.*?)^\}", text, re.M | re.S):
            fields = []
            for line in m[2].split("\n"):
                f = GO_FIELD.match(line)
                if not f:
                    continue
                name, typ, tags = f[1], f[2], f[3]
                pb = re.search(r'protobuf:"([^"]*)"', tags)
                js = re.search(r'json:"([^"]*)"', tags)
                fields.append((name, typ, pb[1] if pb else None, js[1] if js else None))
            structs[m[1]] = fields
        for m in re.finditer(r"^type (\w+) ([^\s{][^\n]*)$", text, re.M):
            named[m[1]] = m[2].strip()
    return structs, named


def go_sources(repo, tag, pkgdir):
    names = git(repo, "ls-tree", "--name-only", tag, pkgdir + "/").split("\n")
    texts = []
    for n in names:
        if n.endswith(".go") and not n.endswith("_test.go") and not n.endswith(".pb.go"):
            texts.append(git(repo, "show", f"{tag}:{n}"))
    return texts


def group_name(texts):
    for t in texts:
        m = re.search(r'GroupName\s*=\s*"([^"]*)"', t)
        if m:
            return m[1]
    return None


def main():
    mirror = sys.argv[1]
    pkgs = []  # (alias, proto package, group, version, messages, structs, named)
    alias_of = {}
    for repo, tag, pkgdir, alias, is_group in sources(mirror):
        proto = git(repo, "show", f"{tag}:{pkgdir}/generated.proto")
        package, messages = parse_proto(proto)
        texts = go_sources(repo, tag, pkgdir)
        structs, named = parse_go(texts)
        group = group_name(texts) if is_group else None
        version = pkgdir.rsplit("/", 1)[1] if is_group else None
        alias_of[package] = alias
        pkgs.append((alias, package, group, version, messages, structs, named))

    warnings = []
    meta_structs = next(p[5] for p in pkgs if p[0] == "meta/v1")
    out = ["# Kubernetes protobuf message facts for Skiff's request-body decoder.",
           "# Generated by embedded/protobuf/generate.py from kubernetes/api, apimachinery,",
           f"# apiextensions-apiserver {API_TAG} and kube-aggregator {AGG_TAG}. Format:",
           "#   package <alias> <proto package> <api group or ~ for core or - for none> <version or ->",
           "#   message <Name> [special kind]",
           "#   <number> <json name, or . for inline> <type> [flags: o omitempty, z omitzero, p pointer]",
           "# types: scalar | Name | alias.Name | []T (repeated) | map[K]V"]
    for alias, package, group, version, messages, structs, named in pkgs:
        g = "-" if group is None else (group or "~")
        out.append(f"package {alias} {package} {g} {version or '-'}")

        def ref(typ):
            if typ in SCALARS:
                return typ
            typ = typ.lstrip(".")
            if "." not in typ:
                return typ
            pkg, name = typ.rsplit(".", 1)
            if pkg == package:
                return name
            if pkg not in alias_of:
                warnings.append(f"unknown package {pkg} referenced from {package}")
                return typ
            return f"{alias_of[pkg]}.{name}"

        for mname, fields in sorted(messages.items()):
            full = f"{package}.{mname}"
            special = SPECIAL.get(full)
            gostruct = structs.get(mname)
            target = named.get(mname, "")
            if gostruct is None and target.startswith("metav1."):
                # `type List metav1.List`: the same Go struct under another name.
                gostruct = meta_structs.get(target.removeprefix("metav1."))
            if special is None and gostruct is None:
                if target.startswith("[]") and len(fields) == 1 and fields[0][1] == "repeated":
                    special = "list"
                elif target == "struct{}":
                    gostruct = []
                else:
                    warnings.append(f"no Go struct for {full} ({target})")
            out.append(f"message {mname}" + (f" {special}" if special else ""))
            bynum = {}
            for gname, gtyp, pb, js in gostruct or []:
                if pb:
                    parts = pb.split(",")
                    if len(parts) > 1 and parts[1].isdigit():
                        bynum[int(parts[1])] = (gname, gtyp, parts, js)
            for num, label, typ, pname in fields:
                m = re.fullmatch(r"map<(\w+),([\w.]+)>", typ)
                if m:
                    t = f"map[{ref(m[1])}]{ref(m[2])}"
                elif label == "repeated":
                    t = f"[]{ref(typ)}"
                else:
                    t = ref(typ)
                flags = ""
                json_name = pname
                if special:
                    pass
                elif num not in bynum:
                    warnings.append(f"{full}: proto field {pname}={num} has no Go field")
                    continue
                else:
                    gname, gtyp, parts, js = bynum[num]
                    opts = (js or "").split(",")
                    if js is not None and opts[0] == "-":
                        warnings.append(f"{full}: field {pname} is json:\"-\"; skipped")
                        continue
                    if gname is None and (js is None or opts[0] == ""):
                        json_name = "."
                    elif opts[0]:
                        json_name = opts[0]
                    else:
                        json_name = gname
                    if "omitempty" in opts[1:]:
                        flags += "o"
                    if "omitzero" in opts[1:]:
                        flags += "z"
                    if gtyp.startswith("*"):
                        flags += "p"
                out.append(f"{num} {json_name} {t}" + (f" {flags}" if flags else ""))
    for w in warnings:
        print(w, file=sys.stderr)
    print("\n".join(out))


if __name__ == "__main__":
    main()
