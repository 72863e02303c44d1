#!/usr/bin/env python3
"""Check META.json against the PGXN Meta Spec 1.0.0 and against the tree.

    scripts/check_meta.py [DIR | ARCHIVE.zip]     (default: the checkout)

The spec's rules (required keys and their types, terms, semantic versions,
licenses, prereqs, resources, no unknown keys but x_ ones) are checked here,
written from the spec's text; so is what the spec leaves to the tree: the
name and versions agree with pg_eventstore.control, the Makefile and sql/,
the files named exist, every earlier release has its install script and an
update path to the current version.  For an archive (make dist), the same
checks run on its contents, which must sit under one directory
NAME-VERSION/ and hold the file provides names, equal to the schema it is
built from.  Prints what is wrong and exits 1, or prints one line and exits 0.
"""
import json
import os
import re
import sys
import tempfile
import zipfile

SEMVER = re.compile(r'^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+)?$')
# a term: two or more characters, no whitespace, slash, backslash or colon
TERM = re.compile(r'^[^\s/\\:]{2,}$')
LICENSES = {
    'agpl_3', 'apache_1_1', 'apache_2_0', 'artistic_1', 'artistic_2', 'bsd',
    'freebsd', 'gfdl_1_2', 'gfdl_1_3', 'gpl_1', 'gpl_2', 'gpl_3', 'lgpl_2_1',
    'lgpl_3_0', 'mit', 'mozilla_1_0', 'mozilla_1_1', 'openssl', 'perl_5',
    'postgresql', 'qpl_1_0', 'ssleay', 'sun', 'zlib', 'open_source',
    'restricted', 'unrestricted', 'unknown'}
PHASES = {'configure', 'build', 'test', 'runtime', 'develop'}
RELATIONS = {'requires', 'recommends', 'suggests', 'conflicts'}
# a version range: "0", a version, or comma-separated comparisons
RANGE = re.compile(r'^\s*(0|(==|!=|>=|<=|>|<)?\s*\d+(\.\d+){0,2}(-[0-9A-Za-z-]+)?)\s*$')
URL = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://[^/\s?#]+[^\s]*$')
EMAIL = re.compile(r'^[^@\s]+@[^@\s]+\.[^@\s]+$')

problems = []


def bad(what):
    problems.append(what)


def custom(key):
    return key.startswith(('x_', 'X_'))


def only_keys(obj, allowed, where):
    for k in obj:
        if k not in allowed and not custom(k):
            bad(f'{where}: unknown key "{k}" (custom keys start with x_)')


def string(value, where, pattern=None, what='a string'):
    if not isinstance(value, str) or value == '':
        bad(f'{where}: must be a non-empty string')
    elif pattern is not None and not pattern.match(value):
        bad(f'{where}: "{value}" is not {what}')


def check_spec(meta):
    """The PGXN Meta Spec 1.0.0's own rules."""
    if not isinstance(meta, dict):
        bad('META.json: not a JSON object')
        return
    for k in ('name', 'abstract', 'version', 'maintainer', 'license', 'provides', 'meta-spec'):
        if k not in meta:
            bad(f'META.json: "{k}" is required')
    only_keys(meta, {'name', 'abstract', 'version', 'maintainer', 'license', 'provides',
                     'meta-spec', 'description', 'generated_by', 'tags', 'no_index',
                     'prereqs', 'release_status', 'resources'}, 'META.json')
    if 'name' in meta:
        string(meta['name'], 'name', TERM, 'a term (2+ characters, no whitespace, / \\ or :)')
    if 'version' in meta:
        string(meta['version'], 'version', SEMVER, 'a semantic version')
    for k in ('abstract', 'description', 'generated_by'):
        if k in meta:
            string(meta[k], k)
    m = meta.get('maintainer')
    if m is not None:
        names = m if isinstance(m, list) else [m]
        if not names:
            bad('maintainer: must name someone')
        for n in names:
            string(n, 'maintainer')
    lic = meta.get('license')
    if lic is not None:
        if isinstance(lic, dict):
            if not lic:
                bad('license: an empty object')
            for name, url in lic.items():
                string(url, f'license.{name}', URL, 'a URL')
        else:
            for name in (lic if isinstance(lic, list) else [lic]):
                if name not in LICENSES:
                    bad(f'license: "{name}" is not one of the spec\'s license strings')
    provides = meta.get('provides')
    if provides is not None:
        if not isinstance(provides, dict) or not provides:
            bad('provides: must be an object naming at least one extension')
        else:
            for ext, p in provides.items():
                string(ext, 'provides: an extension name', TERM, 'a term')
                where = f'provides.{ext}'
                if not isinstance(p, dict):
                    bad(f'{where}: must be an object')
                    continue
                only_keys(p, {'file', 'version', 'abstract', 'docfile'}, where)
                for k in ('file', 'version'):
                    if k not in p:
                        bad(f'{where}: "{k}" is required')
                if 'version' in p:
                    string(p['version'], f'{where}.version', SEMVER, 'a semantic version')
                for k in ('file', 'docfile', 'abstract'):
                    if k in p:
                        string(p[k], f'{where}.{k}')
    spec = meta.get('meta-spec')
    if spec is not None:
        if not isinstance(spec, dict) or spec.get('version') != '1.0.0':
            bad('meta-spec: must be {"version": "1.0.0"}')
        else:
            only_keys(spec, {'version', 'url'}, 'meta-spec')
            if 'url' in spec:
                string(spec['url'], 'meta-spec.url', URL, 'a URL')
    tags = meta.get('tags')
    if tags is not None:
        if not isinstance(tags, list) or not tags:
            bad('tags: must be a non-empty list')
        else:
            for t in tags:
                if not isinstance(t, str) or not 0 < len(t) <= 255:
                    bad(f'tags: {t!r} is not a string of 1 to 255 characters')
    if 'release_status' in meta and meta['release_status'] not in ('stable', 'testing', 'unstable'):
        bad('release_status: must be stable, testing or unstable')
    prereqs = meta.get('prereqs')
    if prereqs is not None:
        if not isinstance(prereqs, dict):
            bad('prereqs: must be an object')
        else:
            for phase, rels in prereqs.items():
                if phase not in PHASES and not custom(phase):
                    bad(f'prereqs: unknown phase "{phase}"')
                    continue
                if not isinstance(rels, dict):
                    bad(f'prereqs.{phase}: must be an object')
                    continue
                for rel, deps in rels.items():
                    if rel not in RELATIONS and not custom(rel):
                        bad(f'prereqs.{phase}: unknown relationship "{rel}"')
                        continue
                    if not isinstance(deps, dict):
                        bad(f'prereqs.{phase}.{rel}: must be an object')
                        continue
                    for name, rng in deps.items():
                        where = f'prereqs.{phase}.{rel}.{name}'
                        if not isinstance(rng, str) or not all(
                                RANGE.match(part) for part in rng.split(',')):
                            bad(f'{where}: {rng!r} is not a version range')
    res = meta.get('resources')
    if res is not None:
        if not isinstance(res, dict):
            bad('resources: must be an object')
            return
        only_keys(res, {'homepage', 'bugtracker', 'repository'}, 'resources')
        if 'homepage' in res:
            string(res['homepage'], 'resources.homepage', URL, 'an absolute URL')
        for key, fields in (('bugtracker', {'web': URL, 'mailto': EMAIL}),
                            ('repository', {'url': URL, 'web': URL, 'type': re.compile(r'^[a-z]+$')})):
            if key not in res:
                continue
            if not isinstance(res[key], dict) or not res[key]:
                bad(f'resources.{key}: must be a non-empty object')
                continue
            only_keys(res[key], set(fields), f'resources.{key}')
            for f, pattern in fields.items():
                if f in res[key]:
                    string(res[key][f], f'resources.{key}.{f}', pattern,
                           'lowercase' if f == 'type' else 'an absolute URL' if pattern is URL
                           else 'an address')


def read(root, path):
    with open(os.path.join(root, path), encoding='utf-8') as f:
        return f.read()


def check_tree(meta, root, archive):
    """What the spec leaves to the distribution: it agrees with itself."""
    name, version = meta.get('name'), meta.get('version')
    control_path = f'{name}.control'
    if not os.path.isfile(os.path.join(root, control_path)):
        bad(f'{control_path}: missing (the name must be the extension\'s)')
        return
    control = read(root, control_path)
    m = re.search(r"^default_version\s*=\s*'([^']*)'", control, re.M)
    if not m or m.group(1) != version:
        bad(f'{control_path}: default_version is not {version}')
    comment = re.search(r"^comment\s*=\s*'([^']*)'", control, re.M)
    p = (meta.get('provides') or {}).get(name)
    if p is None:
        bad(f'provides: does not name the extension {name}')
        return
    if p.get('version') != version:
        bad(f'provides.{name}.version is {p.get("version")}, not the version {version}')
    if comment and p.get('abstract') not in (None, comment.group(1)):
        bad(f'provides.{name}.abstract is not the control file\'s comment')
    current = f'sql/{name}--{version}.sql'
    if p.get('file') != current:
        bad(f'provides.{name}.file is {p.get("file")}, not the current version\'s install script {current}')
    schema = f'sql/{name}.sql'
    if not os.path.isfile(os.path.join(root, schema)):
        bad(f'{schema}: missing')
    if archive:
        if not os.path.isfile(os.path.join(root, current)):
            bad(f'{current}: not in the archive')
        elif read(root, current) != read(root, schema):
            bad(f'{current}: differs from {schema}, which it is built from')
    elif 'DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql' not in read(root, 'Makefile') or \
            not re.search(r'^\$\(DATA_built\): sql/\$\(EXTENSION\)\.sql$', read(root, 'Makefile'), re.M):
        bad(f'Makefile: does not build {current} from {schema}')
    for k in ('docfile',):
        if k in p and not os.path.isfile(os.path.join(root, p[k])):
            bad(f'provides.{name}.{k}: {p[k]} does not exist')
    if 'license' in meta and meta['license'] == 'postgresql' and \
            not os.path.isfile(os.path.join(root, 'LICENSE')):
        bad('LICENSE: missing')
    pg = ((meta.get('prereqs') or {}).get('runtime') or {}).get('requires', {}).get('PostgreSQL')
    if pg is None or not re.match(r'^(>=\s*)?15(\.|$)', pg):
        bad('prereqs.runtime.requires.PostgreSQL must require PostgreSQL 15')

    # releases: every version with an install or upgrade script in sql/
    installs, edges = set(), {}
    for f in os.listdir(os.path.join(root, 'sql')):
        m = re.match(rf'^{re.escape(name)}--([^-]+)--([^-]+)\.sql$', f)
        if m:
            edges.setdefault(m.group(1), set()).add(m.group(2))
            continue
        m = re.match(rf'^{re.escape(name)}--([^-]+)\.sql$', f)
        if m:
            installs.add(m.group(1))
    earlier = (installs | set(edges)) - {version}
    for v in sorted(earlier):
        if v not in installs:
            bad(f'release {v}: sql/{name}--{v}.sql is missing (an upgrade starts there)')
        seen, todo = {v}, [v]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        if version not in seen:
            bad(f'release {v}: no update path to {version} in sql/')
    return sorted(earlier)


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..')
    archive = target.endswith('.zip')
    with tempfile.TemporaryDirectory() as tmp:
        root = target
        if archive:
            with zipfile.ZipFile(target) as z:
                names = z.namelist()
                tops = {n.split('/', 1)[0] for n in names}
                z.extractall(tmp)
            if len(tops) != 1:
                print(f'{target}: not under one top directory: {sorted(tops)}')
                return 1
            root = os.path.join(tmp, tops.pop())
        try:
            meta = json.loads(read(root, 'META.json'))
        except (OSError, ValueError) as e:
            print(f'META.json: {e}')
            return 1
        check_spec(meta)
        releases = []
        if not problems:
            releases = check_tree(meta, root, archive) or []
            if archive and os.path.basename(root) != f'{meta["name"]}-{meta["version"]}':
                bad(f'{target}: its top directory is {os.path.basename(root)}, '
                    f'not {meta["name"]}-{meta["version"]}')
    if problems:
        for p in problems:
            print(f'{target}: {p}')
        return 1
    print(f'{"archive " + target if archive else "META.json"}: valid PGXN Meta Spec 1.0.0, '
          f'{meta["name"]} {meta["version"]}, provides {meta["provides"][meta["name"]]["file"]}, '
          f'update paths from {", ".join(releases) or "no earlier release"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
