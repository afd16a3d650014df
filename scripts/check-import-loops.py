#!/usr/bin/env python3
"""Import loops between a crate's modules (docs/CONTRIBUTING.md: imports run one way).

For every crate under crates/, reads each module file's `crate::a::b` and `super::x` paths
(outside comments and the `#[cfg(test)] mod tests` block), maps each to the module file it names,
and reports every cycle between module files (a parent declaring its children is not an import).
Exits 1 if any crate has one. Usage: scripts/check-import-loops.py
"""
import os, re, glob, sys
def modpath(src,f):
    rel=os.path.relpath(f,src)[:-3].split('/')
    if rel[-1]=='mod': rel=rel[:-1]
    return tuple(rel)
def mods(crate):
    src=f'crates/{crate}/src'
    files={modpath(src,f):f for f in glob.glob(src+'/**/*.rs',recursive=True)}
    names=set(files)
    g={}
    for m,f in files.items():
        if m in (('lib',),('main',)): continue
        lines=[l for l in open(f).read().split('\n') if not l.strip().startswith('//')]
        txt='\n'.join(lines)
        txt=re.split(r'#\[cfg\((?:all\()?test[^\]]*\]\s*mod tests',txt)[0]
        deps=set()
        for path in re.findall(r'crate((?:::[a-z_0-9]+)+)',txt):
            parts=tuple(path.strip(':').split('::'))
            for k in range(len(parts),0,-1):
                if parts[:k] in names: deps.add(parts[:k]); break
        parent=m[:-1] if not files[m].endswith('mod.rs') else m[:-1]
        base = m[:-1] if not f.endswith('mod.rs') else m[:-1]
        for path in re.findall(r'\bsuper((?:::[a-z_0-9]+)+)',txt):
            parts=tuple(path.strip(':').split('::'))
            full=(m[:-1] if not f.endswith('mod.rs') else m[:-1])
            cand=full+parts
            for k in range(len(cand),0,-1):
                if cand[:k] in names and cand[:k]!=m: deps.add(cand[:k]); break
        deps.discard(m)
        # a parent module declaring children is not an import
        g[m]={d for d in deps if not (len(d)>len(m) and d[:len(m)]==m)}
    cycles={}
    def dfs(start,node,path):
        for n in g.get(node,()):
            if n==start: cycles.setdefault(frozenset(path),path)
            elif n not in path and n in g and len(path)<6: dfs(start,n,path+[n])
    for m in g: dfs(m,m,[m])
    return list(cycles.values())
os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
found = False
for c in sorted(os.listdir('crates')):
    for p in sorted(mods(c), key=len):
        found = True
        print(f"{c}: {' -> '.join('::'.join(x) for x in p)} -> {'::'.join(p[0])}")
if found:
    print("import loops found: move the shared item down into a leaf, or the code that needs both up", file=sys.stderr)
    sys.exit(1)
print("no import loops between module files")
