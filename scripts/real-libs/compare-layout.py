#!/usr/bin/env python3
"""Compare two builds of a shared library the way `ulp-pack` judges them.

    compare-layout.py OLD.so NEW.so

Everything is read through `readelf -W` (binutils), plus raw bytes of the
files at offsets readelf reports.  The report has one line per fact:

    MATCH   <what>                      a fact the pack rules need identical
    DIFFER  <what>: <details>           such a fact differs (the pair is not eligible)
    info    <what>: <details>           a difference the rules allow (code, read-only data)

The rules checked (docs/REAL-LIBRARIES.md, ../shared/DESIGN.md "Pack"):
  - the writable PT_LOAD (file offset, address, sizes, page offset) and PT_GNU_RELRO;
  - every writable section (.init_array .. .bss): address, offset, size, alignment;
  - the aliased region (what survives RELRO: partial-RELRO .got.plt, .data, .bss);
  - dynamic relocations whose target lies in the writable segment: same offsets,
    types and symbols (addends may differ, they are listed as info);
  - TLS: PT_TLS and .tdata/.tbss identical (or absent in both);
  - init code: DT_INIT/DT_INIT_ARRAY, the .init bytes, and the instructions reachable
    from DT_INIT and each init_array target through direct branches and calls
    (objdump -d), byte for byte;
  - exported symbols (name@version): none removed; imported symbols: none added.

Exit status: 0 when every MATCH/DIFFER fact matches, 1 when one differs,
2 on usage or tool errors.  This is a verification aid for the real-library
fixtures, not the packer: the packer in packer/ is the authority.
"""

import re
import subprocess
import sys

PAGE = 0x1000


def readelf(*args):
    try:
        return subprocess.run(["readelf", "-W", *args], check=True, capture_output=True,
                              text=True).stdout
    except FileNotFoundError:
        sys.exit("compare-layout: readelf not found (install binutils)")
    except subprocess.CalledProcessError as e:
        sys.stderr.write(e.stderr)
        sys.exit(2)


class Elf:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            self.data = f.read()
        self.phdrs = self._phdrs()
        self.sections = self._sections()
        self.dynamic = self._dynamic()
        self.relocs = self._relocs()
        self.syms = self._dynsyms()
        notes = readelf("-n", path)
        m = re.search(r"Build ID:\s*([0-9a-f]+)", notes)
        self.build_id = m.group(1) if m else None

    def _phdrs(self):
        out = []
        rx = re.compile(r"^\s*([A-Z_]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+"
                        r"0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+([RWE ]+?)\s+0x([0-9a-f]+)\s*$")
        for line in readelf("-l", self.path).splitlines():
            m = rx.match(line)
            if m:
                t, off, va, pa, fsz, msz, flg, al = m.groups()
                out.append(dict(type=t, offset=int(off, 16), vaddr=int(va, 16),
                                filesz=int(fsz, 16), memsz=int(msz, 16),
                                flags=flg.replace(" ", ""), align=int(al, 16)))
        return out

    def _sections(self):
        out = {}
        rx = re.compile(r"^\s*\[\s*(\d+)\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+"
                        r"([0-9a-f]+)\s+([0-9a-f]+)\s+([A-Za-z]*)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
        for line in readelf("-S", self.path).splitlines():
            m = rx.match(line)
            if m and m.group(1) != "0":
                _, name, typ, addr, off, size, es, flg, lk, inf, al = m.groups()
                out[name] = dict(name=name, type=typ, addr=int(addr, 16), offset=int(off, 16),
                                 size=int(size, 16), flags=flg, align=int(al))
        return out

    def _dynamic(self):
        out = {}
        rx = re.compile(r"^\s*0x[0-9a-f]+\s+\((\w+)\)\s+(.*)$")
        for line in readelf("-d", self.path).splitlines():
            m = rx.match(line)
            if m:
                out.setdefault(m.group(1), []).append(m.group(2).strip())
        return out

    def _relocs(self):
        out = []
        rx = re.compile(r"^([0-9a-f]{16})\s+([0-9a-f]{16})\s+(R_\S+)\s*(.*)$")
        sym_rx = re.compile(r"^([0-9a-f]+)\s+(\S+)\s*([+-])\s*([0-9a-f]+)$")
        for line in readelf("-r", self.path).splitlines():
            m = rx.match(line.strip())
            if not m:
                continue
            off, info, typ, rest = m.groups()
            sym, addend = "", 0
            s = sym_rx.match(rest.strip())
            if s:
                sym = s.group(2)
                addend = int(s.group(4), 16) * (-1 if s.group(3) == "-" else 1)
            elif rest.strip():
                addend = int(rest.strip().split()[-1], 16)
            out.append(dict(offset=int(off, 16), type=typ, sym=sym, addend=addend))
        return out

    def _dynsyms(self):
        out = []
        rx = re.compile(r"^\s*\d+:\s+([0-9a-f]+)\s+(\d+|0x[0-9a-f]+)\s+(\S+)\s+(\S+)\s+(\S+)\s+"
                        r"(\S+)\s+(\S+)(?:\s+\(\d+\))?\s*$")
        for line in readelf("--dyn-syms", self.path).splitlines():
            m = rx.match(line)
            if not m:
                continue
            val, size, typ, bind, vis, ndx, name = m.groups()
            if not name or name == "0":
                continue
            out.append(dict(value=int(val, 16), size=int(size, 0), type=typ, bind=bind,
                            vis=vis, ndx=ndx, name=name.replace("@@", "@")))
        return out

    # derived facts -----------------------------------------------------------
    def load(self, flags):
        return [p for p in self.phdrs if p["type"] == "LOAD" and p["flags"] == flags]

    def one(self, typ):
        ps = [p for p in self.phdrs if p["type"] == typ]
        return ps[0] if ps else None

    def rw_range(self):
        rw = [p for p in self.phdrs if p["type"] == "LOAD" and "W" in p["flags"]]
        if len(rw) != 1:
            return None
        return rw[0]["vaddr"], rw[0]["vaddr"] + rw[0]["memsz"]

    def aliased_range(self):
        """What survives RELRO: from the page where RELRO protection ends to the RW end."""
        rng = self.rw_range()
        if not rng:
            return None
        relro = self.one("GNU_RELRO")
        start = rng[0]
        if relro:
            start = (relro["vaddr"] + relro["memsz"]) & ~(PAGE - 1)
            start = max(start, rng[0])
        return start, rng[1]

    def bind_now(self):
        flags = " ".join(self.dynamic.get("FLAGS", []) + self.dynamic.get("FLAGS_1", []))
        return "BIND_NOW" in flags or re.search(r"\bNOW\b", flags) is not None

    def bytes_at_vaddr(self, vaddr, n):
        for p in self.phdrs:
            if p["type"] == "LOAD" and p["vaddr"] <= vaddr < p["vaddr"] + p["filesz"]:
                off = p["offset"] + (vaddr - p["vaddr"])
                return self.data[off:off + n]
        return b""

    def section_bytes(self, name):
        s = self.sections.get(name)
        if not s or s["type"] == "NOBITS":
            return b""
        return self.data[s["offset"]:s["offset"] + s["size"]]

    def disassembly(self):
        """{address: (bytes hex, mnemonic, operand)} of the executable sections, via objdump."""
        if getattr(self, "_dis", None) is None:
            try:
                out = subprocess.run(["objdump", "-d", "-w", self.path], check=True,
                                     capture_output=True, text=True).stdout
            except (FileNotFoundError, subprocess.CalledProcessError) as e:
                sys.exit("compare-layout: objdump failed: %s" % e)
            rx = re.compile(r"^\s*([0-9a-f]+):\t([0-9a-f ]+?)\s*\t(\S+)\s*(.*)$")
            self._dis = {}
            for line in out.splitlines():
                m = rx.match(line)
                if m:
                    self._dis[int(m.group(1), 16)] = (m.group(2).replace(" ", ""), m.group(3),
                                                      m.group(4))
            self._order = sorted(self._dis)
        return self._dis

    def reachable_code(self, entries, limit=5000):
        """(address, bytes) of every instruction reachable from entries through direct
        branches and calls that stay in .init/.text (the PLT is a boundary)."""
        import bisect
        dis = self.disassembly()
        text = [self.sections[n] for n in (".init", ".text", ".fini") if n in self.sections]
        inside = lambda a: any(s["addr"] <= a < s["addr"] + s["size"] for s in text)
        seen, out, work = set(), set(), list(entries)
        while work and len(out) < limit:
            addr = work.pop()
            if addr in seen or addr not in dis:
                continue
            i = bisect.bisect_left(self._order, addr)
            while i < len(self._order) and len(out) < limit:
                a = self._order[i]
                if a in seen:
                    break
                seen.add(a)
                raw, mnem, ops = dis[a]
                out.add((a, raw))
                target = re.match(r"^([0-9a-f]+)\b", ops)
                direct = int(target.group(1), 16) if target and not ops.startswith("*") else None
                if mnem.startswith("ret") or mnem in ("hlt", "ud2"):
                    break
                if mnem.startswith("jmp"):
                    if direct is not None and inside(direct):
                        work.append(direct)
                    break
                if (mnem.startswith("j") or mnem.startswith("call")) and direct is not None \
                        and inside(direct):
                    work.append(direct)
                i += 1
        return out

    def section_of(self, vaddr):
        for s in self.sections.values():
            if "A" in s["flags"] and s["addr"] <= vaddr < s["addr"] + max(s["size"], 1):
                return s["name"]
        return "?"


def hx(n):
    return "0x%x" % n


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    old, new = Elf(argv[1]), Elf(argv[2])
    failures = 0

    def match(what, a, b, render=str):
        nonlocal failures
        if a == b:
            print("MATCH   %s: %s" % (what, render(a)))
        else:
            failures += 1
            print("DIFFER  %s: old %s, new %s" % (what, render(a), render(b)))

    def info(what, details):
        print("info    %s: %s" % (what, details))

    print("old: %s (build-id %s)" % (old.path, old.build_id))
    print("new: %s (build-id %s)" % (new.path, new.build_id))
    info("build-id", "identical" if old.build_id == new.build_id else "differs")

    # identity --------------------------------------------------------------
    match("SONAME", old.dynamic.get("SONAME"), new.dynamic.get("SONAME"))
    match("NEEDED", old.dynamic.get("NEEDED"), new.dynamic.get("NEEDED"))
    match("RELRO mode", "full" if old.bind_now() else "partial",
          "full" if new.bind_now() else "partial")

    # program headers -------------------------------------------------------
    def ph(p):
        if p is None:
            return "absent"
        return "off %s vaddr %s filesz %s memsz %s %s align %s" % (
            hx(p["offset"]), hx(p["vaddr"]), hx(p["filesz"]), hx(p["memsz"]), p["flags"],
            hx(p["align"]))

    for flags in ("R", "RE"):
        a, b = old.load(flags), new.load(flags)
        if [ph(p) for p in a] == [ph(p) for p in b]:
            info("PT_LOAD %s" % flags, "identical: " + "; ".join(ph(p) for p in a))
        else:
            info("PT_LOAD %s" % flags, "old [%s] new [%s]" % ("; ".join(ph(p) for p in a),
                                                             "; ".join(ph(p) for p in b)))
    rw_old = [p for p in old.phdrs if p["type"] == "LOAD" and "W" in p["flags"]]
    rw_new = [p for p in new.phdrs if p["type"] == "LOAD" and "W" in p["flags"]]
    match("PT_LOAD RW", [ph(p) for p in rw_old], [ph(p) for p in rw_new],
          lambda v: "; ".join(v))
    match("PT_GNU_RELRO", ph(old.one("GNU_RELRO")), ph(new.one("GNU_RELRO")))
    match("PT_DYNAMIC", ph(old.one("DYNAMIC")), ph(new.one("DYNAMIC")))
    match("PT_TLS", ph(old.one("TLS")), ph(new.one("TLS")))

    # writable sections -----------------------------------------------------
    def wsecs(e):
        return [s for s in sorted(e.sections.values(), key=lambda s: s["addr"])
                if "W" in s["flags"] and "A" in s["flags"]]

    def sec(s):
        return "%s %s addr %s off %s size %s align %d" % (
            s["name"], s["type"], hx(s["addr"]), hx(s["offset"]), hx(s["size"]), s["align"])

    names = [s["name"] for s in wsecs(old)] + [s["name"] for s in wsecs(new)
                                                if s["name"] not in old.sections]
    for name in names:
        a, b = old.sections.get(name), new.sections.get(name)
        match("section %s" % name, sec(a) if a else "absent", sec(b) if b else "absent")
    for name in (".tdata", ".tbss"):
        if name not in names:
            a, b = old.sections.get(name), new.sections.get(name)
            match("section %s" % name, sec(a) if a else "absent", sec(b) if b else "absent")

    # the aliased region ------------------------------------------------------
    ra, rb = old.aliased_range(), new.aliased_range()

    def rng(r):
        if not r:
            return "none"
        secs = sorted({e for e in (old.section_of(v) for v in range(r[0], r[1], 8)) if e != "?"})
        return "%s..%s (%d bytes, page offset %s; %s)" % (
            hx(r[0]), hx(r[1]), r[1] - r[0], hx(r[0] % PAGE), " ".join(secs))

    match("aliased region (survives RELRO)", rng(ra), rng(rb))
    if ra and rb and ra == rb:
        for name in (".got.plt", ".data"):
            s = old.sections.get(name)
            if s and s["addr"] >= ra[0]:
                same = old.section_bytes(name) == new.section_bytes(name)
                if name == ".data":
                    info("initial bytes of .data", "identical" if same else
                         "differ (allowed: the live values are kept through the alias)")
                else:
                    info("file bytes of .got.plt", "identical" if same else
                         "differ (lazy-binding slots point into each build's own PLT)")

    # relocations in the writable segment ---------------------------------------
    rw = old.rw_range()
    rw2 = new.rw_range()
    ro = {r["offset"]: r for r in old.relocs if rw and rw[0] <= r["offset"] < rw[1]}
    rn = {r["offset"]: r for r in new.relocs if rw2 and rw2[0] <= r["offset"] < rw2[1]}
    key = lambda r: "%s %s" % (r["type"], r["sym"]) if r["sym"] else r["type"]
    shape_old = {o: key(r) for o, r in ro.items()}
    shape_new = {o: key(r) for o, r in rn.items()}
    if shape_old == shape_new:
        by_type = {}
        for r in ro.values():
            by_type[r["type"]] = by_type.get(r["type"], 0) + 1
        print("MATCH   dynamic relocations in the writable segment: %d, same offsets, types "
              "and symbols (%s)" % (len(ro), ", ".join("%s %d" % kv for kv in sorted(by_type.items()))))
    else:
        failures += 1
        only_old = sorted(set(shape_old) - set(shape_new))
        only_new = sorted(set(shape_new) - set(shape_old))
        changed = sorted(o for o in set(shape_old) & set(shape_new) if shape_old[o] != shape_new[o])
        print("DIFFER  dynamic relocations in the writable segment: old %d, new %d; only in old "
              "%d, only in new %d, other type/symbol %d" % (len(ro), len(rn), len(only_old),
                                                           len(only_new), len(changed)))
        for o in (only_old + only_new + changed)[:20]:
            print("        %s (%s) old %s / new %s" % (hx(o), old.section_of(o),
                                                      shape_old.get(o, "-"), shape_new.get(o, "-")))
    diff_addend = sorted(o for o in set(ro) & set(rn)
                         if shape_old.get(o) == shape_new.get(o) and ro[o]["addend"] != rn[o]["addend"])
    if diff_addend:
        per_sec = {}
        for o in diff_addend:
            per_sec.setdefault(old.section_of(o), []).append(o)
        info("relocation addends", "%d differ (%s); e.g. %s" % (
            len(diff_addend), ", ".join("%s %d" % (k, len(v)) for k, v in sorted(per_sec.items())),
            ", ".join("%s %s: %s -> %s" % (hx(o), ro[o]["type"], hx(ro[o]["addend"]),
                                           hx(rn[o]["addend"])) for o in diff_addend[:4])))
    else:
        info("relocation addends", "all identical")
    if ra:
        inside = [r for o, r in sorted(ro.items()) if ra[0] <= o < ra[1]]
        info("relocations inside the aliased region", "%d: %s" % (
            len(inside), ", ".join("%s %s%s" % (hx(r["offset"]), r["type"].replace("R_X86_64_", ""),
                                               " " + r["sym"] if r["sym"] else "") for r in inside)))

    # symbols -------------------------------------------------------------------
    def exported(e):
        return {s["name"]: s for s in e.syms if s["ndx"] != "UND" and s["bind"] in ("GLOBAL", "WEAK")
                and s["vis"] in ("DEFAULT", "PROTECTED")}

    def imported(e):
        return {s["name"]: s for s in e.syms if s["ndx"] == "UND"}

    eo, en = exported(old), exported(new)
    removed = sorted(set(eo) - set(en))
    added = sorted(set(en) - set(eo))
    if removed:
        failures += 1
        print("DIFFER  exported symbols: %d removed: %s" % (len(removed), " ".join(removed)))
    else:
        print("MATCH   exported symbols: none removed (%d in old)" % len(eo))
    if added:
        info("exported symbols added", " ".join(added))
    kind = [n for n in set(eo) & set(en) if (eo[n]["type"], eo[n]["bind"]) != (en[n]["type"], en[n]["bind"])]
    if kind:
        failures += 1
        print("DIFFER  exported symbol type/binding: %s" % " ".join(sorted(kind)))
    moved = sorted(n for n in set(eo) & set(en) if eo[n]["value"] != en[n]["value"])
    resized = sorted(n for n in set(eo) & set(en) if eo[n]["size"] != en[n]["size"])
    info("exported symbol addresses", "%d moved%s" % (len(moved), (": " + " ".join(moved[:8]) +
                                                                  (" ..." if len(moved) > 8 else "")) if moved else ""))
    info("exported symbol sizes", "%d changed%s" % (len(resized), (": " + " ".join(resized[:8]) +
                                                                   (" ..." if len(resized) > 8 else "")) if resized else ""))
    exported_objects = sorted(n for n, s in eo.items() if s["type"] in ("OBJECT", "TLS") and s["ndx"] != "ABS")
    if exported_objects:
        match("exported data objects", [(n, eo[n]["value"], eo[n]["size"]) for n in exported_objects],
              [(n, en.get(n, {}).get("value"), en.get(n, {}).get("size")) for n in exported_objects])
    io, inn = imported(old), imported(new)
    new_imports = sorted(set(inn) - set(io))
    if new_imports:
        failures += 1
        print("DIFFER  imported symbols: %d new: %s" % (len(new_imports), " ".join(new_imports)))
    else:
        print("MATCH   imported symbols: no new import (%d in old)" % len(io))
    gone = sorted(set(io) - set(inn))
    if gone:
        info("imported symbols no longer used", " ".join(gone))

    # init code ------------------------------------------------------------------
    init_keys = ("INIT", "INIT_ARRAY", "INIT_ARRAYSZ", "PREINIT_ARRAY", "PREINIT_ARRAYSZ")
    match("dynamic INIT, INIT_ARRAY(SZ)", {k: old.dynamic.get(k) for k in init_keys if k in old.dynamic},
          {k: new.dynamic.get(k) for k in init_keys if k in new.dynamic})
    other_keys = ("FINI", "FINI_ARRAY", "FINI_ARRAYSZ", "PLTGOT", "PLTRELSZ", "RELACOUNT", "RELASZ")
    dyn_o = {k: old.dynamic.get(k) for k in other_keys if k in old.dynamic}
    dyn_n = {k: new.dynamic.get(k) for k in other_keys if k in new.dynamic}
    info("dynamic FINI/FINI_ARRAY/PLTGOT/RELA*", "identical" if dyn_o == dyn_n else
         "differ: " + ", ".join("%s %s -> %s" % (k, dyn_o.get(k), dyn_n.get(k))
                                for k in other_keys if dyn_o.get(k) != dyn_n.get(k)))
    match(".init bytes", old.section_bytes(".init").hex(), new.section_bytes(".init").hex(),
          lambda v: v[:48] + ("..." if len(v) > 48 else ""))

    def init_targets(e):
        s = e.sections.get(".init_array")
        if not s:
            return []
        out = []
        for off in range(s["addr"], s["addr"] + s["size"], 8):
            r = next((r for r in e.relocs if r["offset"] == off), None)
            target = r["addend"] if r else int.from_bytes(e.bytes_at_vaddr(off, 8), "little")
            out.append(target)
        return out

    to, tn = init_targets(old), init_targets(new)
    match("init_array targets", [hx(t) for t in to], [hx(t) for t in tn], lambda v: " ".join(v))
    def init_code(e, targets):
        entries = list(targets)
        if e.dynamic.get("INIT"):
            entries.insert(0, int(e.dynamic["INIT"][0], 16))
        return e.reachable_code(entries)

    co, cn = init_code(old, to), init_code(new, tn)
    if co == cn:
        print("MATCH   init code (DT_INIT and init_array targets, with every direct branch and call "
              "they reach): %d instructions, identical bytes" % len(co))
    else:
        failures += 1
        diff = sorted(set(co) ^ set(cn))
        print("DIFFER  init code: old %d instructions, new %d, %d differ (first at %s)" % (
            len(co), len(cn), len(diff), hx(diff[0][0])))

    # read-only content, for information ------------------------------------------
    same, differ = [], []
    for name, s in sorted(old.sections.items(), key=lambda kv: kv[1]["addr"]):
        if "A" not in s["flags"] or s["type"] == "NOBITS":
            continue
        (same if old.section_bytes(name) == new.section_bytes(name) else differ).append(name)
    info("allocated sections with identical bytes", " ".join(same) or "none")
    info("allocated sections whose bytes differ", " ".join(differ) or "none")
    for name in differ:
        a, b = old.section_bytes(name), new.section_bytes(name)
        n = sum(1 for x, y in zip(a, b) if x != y) + abs(len(a) - len(b))
        info("  %s" % name, "size %s -> %s, %d byte(s) differ" % (hx(len(a)), hx(len(b)), n))

    print("RESULT  %s" % ("writable layout, TLS, init code and symbols are compatible"
                          if failures == 0 else "%d incompatible fact(s)" % failures))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
