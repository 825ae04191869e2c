//! Conformance of the scanner's opcode table against Mesa's genxml
//! (`tests/data/gen9.xml`, see `tests/data/README.md`): for every
//! `<instruction>` the table must hold a row with the same command type,
//! opcode and sub-opcodes, length bias, DWord Length field width, fixed
//! length (or a range containing genxml's base length), and engines.
//!
//! genxml is regular enough that a small tag scanner reads it; no XML crate
//! is needed.

use std::collections::HashMap;

use gpu::engine::Engine;
use gpu::scan::table::{lookup, CmdSpec, Engines, Len, Op, Opcode, COMMANDS};

const GEN9: &str = include_str!("data/gen9.xml");

/// One start tag: name, attributes, and whether it closes itself.
#[derive(Debug)]
struct Tag<'a> {
    name: &'a str,
    attrs: Vec<(&'a str, &'a str)>,
    end: bool,
    self_closing: bool,
}

impl<'a> Tag<'a> {
    fn get(&self, k: &str) -> Option<&'a str> {
        self.attrs.iter().find(|(a, _)| *a == k).map(|(_, v)| *v)
    }
}

fn tags(xml: &str) -> Vec<Tag<'_>> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let j = rest.find('>').expect("unterminated tag");
        let body = &rest[..j];
        rest = &rest[j + 1..];
        if body.starts_with('?') || body.starts_with('!') {
            continue;
        }
        let end = body.starts_with('/');
        let body = body.trim_start_matches('/');
        let self_closing = body.ends_with('/');
        let body = body.trim_end_matches('/');
        let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
        let name = &body[..name_end];
        let mut attrs = Vec::new();
        let mut a = &body[name_end..];
        while let Some(eq) = a.find("=\"") {
            let key = a[..eq].trim();
            let v = &a[eq + 2..];
            let close = v.find('"').expect("unterminated attribute");
            attrs.push((key, &v[..close]));
            a = &v[close + 1..];
        }
        out.push(Tag {
            name,
            attrs,
            end,
            self_closing,
        });
    }
    out
}

/// What the oracle says about one instruction.
#[derive(Debug, Default)]
struct Oracle {
    name: String,
    header: u32,
    opcode_mask: u32,
    bias: u32,
    length: Option<u32>,
    dword_length_bits: Option<u32>,
    engine: Option<String>,
    field_types: Vec<String>,
    has_address: bool,
}

fn is_opcode_field(name: &str) -> bool {
    matches!(
        name,
        "Command Type"
            | "MI Command Opcode"
            | "3D Command Opcode"
            | "3D Command Sub Opcode"
            | "Command SubType"
            | "Command Subtype"
            | "Pipeline"
            | "Media Command Pipeline"
            | "Media Command Opcode"
            | "Media Command OpCode"
            | "Media Command Sub-Opcode"
            | "Media Instruction Command"
            | "SubOpcode"
            | "SubOpcode A"
            | "SubOpcode B"
    )
}

fn parse_oracle() -> (Vec<Oracle>, HashMap<String, Vec<String>>) {
    let mut instrs = Vec::new();
    // struct name -> field types (to follow address fields into structs)
    let mut structs: HashMap<String, Vec<String>> = HashMap::new();
    let mut cur: Option<Oracle> = None;
    let mut cur_struct: Option<(String, Vec<String>)> = None;
    for t in tags(GEN9) {
        match (t.name, t.end) {
            ("instruction", false) => {
                cur = Some(Oracle {
                    name: t.get("name").unwrap().to_string(),
                    bias: t.get("bias").unwrap().parse().unwrap(),
                    length: t.get("length").map(|l| l.parse().unwrap()),
                    engine: t.get("engine").map(str::to_string),
                    ..Default::default()
                });
            }
            ("instruction", true) => instrs.push(cur.take().unwrap()),
            ("struct", false) => {
                cur_struct = Some((t.get("name").unwrap().to_string(), Vec::new()));
            }
            ("struct", true) => {
                let (n, f) = cur_struct.take().unwrap();
                structs.insert(n, f);
            }
            ("field", false) => {
                let ty = t.get("type").unwrap_or("").to_string();
                if let Some((_, f)) = cur_struct.as_mut() {
                    f.push(ty.clone());
                }
                if let Some(o) = cur.as_mut() {
                    let start: u32 = t.get("start").unwrap().parse().unwrap();
                    let end: u32 = t.get("end").unwrap().parse().unwrap();
                    let name = t.get("name").unwrap();
                    if end < 32 {
                        let width = end - start + 1;
                        let mask = (((1u64 << width) - 1) << start) as u32;
                        if name == "DWord Length" {
                            o.dword_length_bits = Some(width);
                        } else if is_opcode_field(name) {
                            let v: u32 = t.get("default").unwrap().parse().unwrap();
                            o.header |= v << start;
                            o.opcode_mask |= mask;
                        }
                    }
                    o.has_address |= ty == "address";
                    o.field_types.push(ty);
                }
                let _ = t.self_closing;
            }
            _ => {}
        }
    }
    (instrs, structs)
}

fn has_address(types: &[String], structs: &HashMap<String, Vec<String>>, depth: u32) -> bool {
    types.iter().any(|t| {
        t == "address"
            || (depth < 4
                && structs
                    .get(t)
                    .is_some_and(|f| has_address(f, structs, depth + 1)))
    })
}

fn engines_of(attr: Option<&str>) -> Engines {
    match attr {
        None => Engines::ALL,
        Some(list) => list.split('|').fold(Engines::NONE, |acc, e| {
            acc.union(Engines::only(match e {
                "render" => Engine::Render,
                "blitter" => Engine::Blitter,
                "video" => Engine::Video,
                other => panic!("unknown genxml engine {other}"),
            }))
        }),
    }
}

/// Engine sets that deliberately differ from genxml (documented in
/// `gpu/src/scan/table.rs`).
fn expected_engines(o: &Oracle) -> Engines {
    let vecs = Engines::only(Engine::VideoEnhance);
    if o.name == "MI_FLUSH_DW" {
        Engines::only(Engine::Blitter)
            .union(Engines::only(Engine::Video))
            .union(vecs)
    } else if o.name.starts_with("SFC_") {
        engines_of(o.engine.as_deref()).union(vecs)
    } else {
        engines_of(o.engine.as_deref())
    }
}

fn row_for(o: &Oracle) -> &'static CmdSpec {
    let name = o.name.trim_end_matches(" command");
    let rows: Vec<_> = COMMANDS.iter().filter(|s| s.name == name).collect();
    assert_eq!(rows.len(), 1, "{name}: expected exactly one table row");
    rows[0]
}

#[test]
fn every_genxml_instruction_is_in_the_table() {
    let (instrs, _) = parse_oracle();
    assert_eq!(instrs.len(), 227, "gen9.xml has 227 instructions");
    for o in &instrs {
        row_for(o);
    }
}

#[test]
fn opcodes_match_genxml() {
    let (instrs, _) = parse_oracle();
    for o in &instrs {
        let s = row_for(o);
        // genxml's opcode fields cover exactly our key bits.
        assert_eq!(
            o.opcode_mask,
            s.opcode.mask(),
            "{}: opcode field layout",
            o.name
        );
        assert_eq!(o.header, s.opcode.header_bits(), "{}: opcode value", o.name);
        assert_eq!(Opcode::of(o.header), Some(s.opcode), "{}", o.name);
    }
}

/// Commands whose table length differs from genxml's `length` attribute,
/// each with its range and the reason. genxml's attribute is wrong for
/// many video commands (it gives the header alone, or another command's
/// size), and SKL and KBL differ; the table takes the PRM's and the
/// media-driver's lengths (`mhw_vdbox_*_hwcmd_g9_skl.h` / `_kbl.h`,
/// `dwSize`) and accepts both platforms' forms. Every accepted form lies
/// between the two, and the command streamer reads each command's length
/// from its header, so the scanner and the engine agree on where the next
/// command starts whichever form a guest sends.
const LENGTH_DEVIATIONS: &[(&str, u32, u32, &str)] = &[
    ("HCP_PAK_OBJECT", 3, 3, "genxml's 2 is one short of its own fields (DW2: LCU position); media-driver: 3 DWords per PAK object"),
    ("HCP_PIC_STATE", 19, 32, "media-driver: 19 on SKL, 32 on KBL; genxml's 32 is KBL's"),
    ("HCP_PIPE_BUF_ADDR_STATE", 95, 104, "media-driver: 95 on SKL, 104 on KBL (DW95-103 reserved)"),
    ("HCP_PIPE_MODE_SELECT", 4, 6, "media-driver: 4 on SKL, 6 on KBL"),
    ("HCP_SLICE_STATE", 9, 11, "media-driver: 9 on SKL, 11 on KBL"),
    ("HCP_VP9_PIC_STATE", 19, 19, "genxml's 2 is the header alone; its fields and media-driver (KBL): 19"),
    ("HCP_VP9_SEGMENT_STATE", 7, 8, "media-driver: 8 on SKL, 7 on KBL"),
    ("HEVC_VP9_RDOQ_STATE", 130, 130, "genxml's 62 is shorter than its own fields; fields and media-driver: 130"),
    ("MFC_AVC_PAK_OBJECT", 12, 24, "12 DWords, or 24 with the VDEnc-mode inline data genxml lists at DW12-23"),
    ("MFD_AVC_BSD_OBJECT", 6, 7, "media-driver: 6 on SKL, 7 on KBL (DW6: NAL type override)"),
    ("MFD_AVC_SLICEADDR", 3, 4, "media-driver: 3 on SKL, 4 on KBL (DW3: NAL type override)"),
    ("MFX_AVC_SLICE_STATE", 11, 11, "genxml's 10 is one short of its own fields (DW10: clamp values); media-driver: 11"),
    ("MFX_JPEG_HUFF_TABLE_STATE", 53, 53, "genxml's 831 is not its size; its fields and media-driver: 53"),
    ("MFX_MPEG2_PIC_STATE", 12, 13, "genxml's 2 is the header alone; its fields: 12, media-driver: 13"),
    ("MFX_MPEG_TS_CONTROL", 5, 6, "genxml's 5 is one short of its own fields (DW5)"),
    ("MFX_PIPE_BUF_ADDR_STATE", 65, 68, "media-driver: 65 on SKL, 68 on KBL (DW65-67: slice-size stream-out, in the layout)"),
    ("MFX_QM_STATE", 18, 18, "genxml's 34 is MFX_FQM_STATE's; its fields and media-driver: 18"),
    ("MFX_VP8_BSP_BUF_BASE_ADDR_STATE", 32, 32, "genxml's 2 is the header alone; fields and media-driver: 32"),
    ("MFX_VP8_ENCODER_CFG", 30, 30, "genxml's 2 is the header alone; fields and media-driver: 30 (refused: see its row)"),
    ("MFX_VP8_PIC_STATE", 38, 38, "genxml's 2 is the header alone; fields and media-driver: 38"),
    ("SFC_STATE", 32, 34, "media-driver emits 34 on Gen9 (DW32-33 reserved)"),
    ("STATE_BASE_ADDRESS", 18, 19, "igt rendercopy_gen9.c emits 18 DWords (no bindless size, WaBindlessSurfaceStateModifyEnable:skl,bxt); a bindless base it sets then needs a size set earlier in the submission"),
    ("VDENC_CONST_QPT_STATE", 61, 62, "media-driver emits 61; genxml's fields end before DW61"),
    ("VDENC_IMG_STATE", 35, 36, "media-driver emits 35; genxml's fields end at DW34"),
    ("VDENC_PIPE_BUF_ADDR_STATE", 37, 38, "media-driver emits 37; genxml's fields end at DW36"),
    ("VDENC_WALKER_STATE", 2, 4, "media-driver: 2 on SKL, 4 on KBL"),
];

/// Commands whose genxml fields reach past the table's longest form, and
/// why that is right.
const FIELDS_PAST_LENGTH: &[(&str, &str)] = &[
    ("VDENC_WALKER_STATE", "DW4-9 (tile stream-in/out offsets) are later gens' fields; Gen9's media-driver emits at most 4 DWords"),
    ("SFC_AVS_STATE", "genxml's body struct runs 46 DWords past the command; PRM and media-driver: 3 DWords"),
    ("SFC_AVS_LUMA_COEFF_TABLE", "genxml's body struct runs 4 DWords past the command; media-driver: 129"),
    ("HCP_TILE_CODING", "refused (not a Gen9 command)"),
    ("MI_DISPLAY_FLIP", "privileged: refused whatever its length"),
    ("MI_STORE_DATA_INDEX", "privileged: refused whatever its length"),
];

fn deviation(name: &str) -> Option<(u32, u32)> {
    LENGTH_DEVIATIONS
        .iter()
        .find(|d| d.0 == name)
        .map(|d| (d.1, d.2))
}

#[test]
fn lengths_match_genxml() {
    let (instrs, _) = parse_oracle();
    for o in &instrs {
        let s = row_for(o);
        match (s.len, o.dword_length_bits) {
            (Len::Fixed(n), None) => {
                assert_eq!(Some(u32::from(n)), o.length, "{}: fixed length", o.name);
                assert_eq!(o.bias, 1, "{}: no length field means bias 1", o.name);
            }
            (
                Len::Field {
                    bits,
                    bias,
                    min,
                    max,
                },
                Some(gbits),
            ) => {
                assert_eq!(u32::from(bits), gbits, "{}: DWord Length width", o.name);
                assert_eq!(u32::from(bias), o.bias, "{}: length bias", o.name);
                match (deviation(s.name), o.length) {
                    (Some(range), _) => {
                        assert_eq!((min, max), range, "{}: listed deviation", o.name)
                    }
                    (None, Some(l)) => {
                        assert!(min <= l && l <= max, "{}: {l} not in {min}..={max}", o.name)
                    }
                    (None, None) => {}
                }
            }
            (l, g) => panic!("{}: table {l:?} vs genxml length field {g:?}", o.name),
        }
    }
    // Every deviation names a row and says why.
    for (name, _, _, why) in LENGTH_DEVIATIONS {
        assert!(COMMANDS.iter().any(|c| c.name == *name), "{name}");
        assert!(!why.is_empty(), "{name}");
    }
}

/// DWords genxml's fields of each instruction span (every element of a
/// fixed-count group, one element of a variable one).
fn field_extents() -> HashMap<String, u32> {
    let mut out = HashMap::new();
    let mut groups: Vec<(u32, u32, u32)> = Vec::new();
    let mut cur: Option<(String, u32)> = None;
    for t in tags(GEN9) {
        match (t.name, t.end) {
            ("instruction", false) => {
                let name = t.get("name").unwrap().trim_end_matches(" command");
                cur = Some((name.to_string(), 0));
                groups.clear();
            }
            ("instruction", true) => {
                let (name, end) = cur.take().unwrap();
                out.insert(name, end / 32 + 1);
            }
            ("group", false) if cur.is_some() => {
                let start: u32 = t.get("start").unwrap().parse().unwrap();
                let count: u32 = t.get("count").unwrap().parse().unwrap();
                let size: u32 = t.get("size").unwrap().parse().unwrap();
                if !t.self_closing {
                    groups.push((start, count, size));
                }
            }
            ("group", true) if cur.is_some() => {
                groups.pop();
            }
            ("field", false) => {
                let Some((_, end)) = cur.as_mut() else {
                    continue;
                };
                let mut last: u32 = t.get("end").unwrap().parse().unwrap();
                for &(start, count, size) in groups.iter().rev() {
                    last += start + count.max(1).saturating_sub(1) * size;
                }
                *end = (*end).max(last);
            }
            _ => {}
        }
    }
    out
}

/// The longest form the table accepts holds every field genxml declares
/// for the command, unless the command is listed with the reason; so a
/// genxml `length` shorter than its fields (the header alone, for several
/// video commands) cannot make the scanner refuse what drivers emit.
#[test]
fn lengths_hold_every_field() {
    let extents = field_extents();
    assert_eq!(extents.len(), 227);
    let mut checked = 0;
    for s in COMMANDS {
        let Some(&need) = extents.get(s.name) else {
            continue;
        };
        let max = match s.len {
            Len::Fixed(n) => u32::from(n),
            Len::Field { max, .. } => max,
        };
        let listed = FIELDS_PAST_LENGTH.iter().any(|f| f.0 == s.name);
        assert!(
            max >= need || listed,
            "{}: accepts at most {max} DWords, genxml's fields span {need}",
            s.name
        );
        assert!(
            !(listed && max >= need),
            "{}: listed but needs no exception",
            s.name
        );
        checked += 1;
    }
    assert_eq!(checked, 227);
}

/// Commands genxml gives a fixed length that the hardware nevertheless
/// accepts in several lengths (register lists, qword forms, inline data).
const VARIABLE_DESPITE_GENXML: &[&str] = &[
    "MI_LOAD_REGISTER_IMM",
    "MI_STORE_DATA_IMM",
    "MI_ATOMIC",
    "MI_FLUSH_DW",
];

#[test]
fn fixed_length_commands_accept_only_that_length() {
    let (instrs, _) = parse_oracle();
    for o in &instrs {
        let s = row_for(o);
        if let (Some(l), Len::Field { min, max, .. }) = (o.length, s.len) {
            if VARIABLE_DESPITE_GENXML.contains(&s.name) {
                assert!(min < max, "{}", o.name);
            } else if deviation(s.name).is_none() {
                assert_eq!((min, max), (l, l), "{}: must be exactly {l} DWords", o.name);
            }
        }
    }
}

#[test]
fn engines_match_genxml() {
    let (instrs, _) = parse_oracle();
    for o in &instrs {
        let s = row_for(o);
        assert_eq!(s.engines, expected_engines(o), "{}: engines", o.name);
        for e in Engine::ALL {
            let found = lookup(e, o.header).map(|r| r.name);
            if s.engines.contains(e) {
                assert_eq!(found, Some(s.name), "{} on {e}", o.name);
            } else {
                assert_ne!(found, Some(s.name), "{} must not decode on {e}", o.name);
            }
        }
    }
}

#[test]
fn commands_with_addresses_are_never_plain() {
    let (instrs, structs) = parse_oracle();
    let mut n = 0;
    for o in &instrs {
        if o.has_address || has_address(&o.field_types, &structs, 0) {
            n += 1;
            let s = row_for(o);
            assert!(
                !matches!(s.op, Op::Plain | Op::Noop),
                "{} carries graphics addresses but is classed Plain",
                o.name
            );
        }
    }
    assert!(n > 50, "found only {n} address-bearing instructions");
}

/// An address-bearing item of a struct or instruction body: an address
/// field at a bit position, or a struct-typed field to expand there.
#[derive(Debug, Clone)]
enum Item {
    Addr(u32, String),
    Struct(u32, String),
}

/// Bit positions (and names) of every `type="address"` field, expanding
/// struct-typed fields and groups (every element of a fixed-count group,
/// the first element of a variable one).
fn address_fields() -> Vec<(String, Vec<(u32, String)>)> {
    let mut structs: HashMap<String, Vec<Item>> = HashMap::new();
    let mut instrs: Vec<(String, Vec<Item>)> = Vec::new();
    // (start, count, size) of open groups, relative to their parent.
    let mut groups: Vec<(u32, u32, u32)> = Vec::new();
    let mut cur: Option<(bool, String, Vec<Item>)> = None;
    let all_structs: Vec<String> = tags(GEN9)
        .iter()
        .filter(|t| t.name == "struct" && !t.end)
        .map(|t| t.get("name").unwrap().to_string())
        .collect();
    for t in tags(GEN9) {
        match (t.name, t.end) {
            ("instruction" | "struct", false) => {
                cur = Some((
                    t.name == "struct",
                    t.get("name").unwrap().to_string(),
                    Vec::new(),
                ));
                groups.clear();
            }
            ("instruction" | "struct", true) => {
                let (is_struct, name, items) = cur.take().unwrap();
                if is_struct {
                    structs.insert(name, items);
                } else {
                    instrs.push((name, items));
                }
            }
            ("group", false) => {
                let start: u32 = t.get("start").unwrap().parse().unwrap();
                let count: u32 = t.get("count").unwrap().parse().unwrap();
                let size: u32 = t.get("size").unwrap().parse().unwrap();
                groups.push((start, count, size));
                if t.self_closing {
                    groups.pop();
                }
            }
            ("group", true) => {
                groups.pop();
            }
            ("field", false) => {
                let Some((_, _, items)) = cur.as_mut() else {
                    continue;
                };
                let ty = t.get("type").unwrap_or("");
                let start: u32 = t.get("start").unwrap().parse().unwrap();
                let name = t.get("name").unwrap().to_string();
                let is_addr = ty == "address";
                let is_struct = all_structs.iter().any(|s| s == ty);
                if !is_addr && !is_struct {
                    continue;
                }
                // Every combination of group elements.
                let mut positions = vec![start];
                for &(gs, count, size) in groups.iter().rev() {
                    let n = count.max(1);
                    positions = positions
                        .iter()
                        .flat_map(|p| (0..n).map(move |e| gs + e * size + p))
                        .collect();
                }
                for p in positions {
                    items.push(if is_addr {
                        Item::Addr(p, name.clone())
                    } else {
                        Item::Struct(p, ty.to_string())
                    });
                }
            }
            _ => {}
        }
    }
    fn resolve(
        items: &[Item],
        base: u32,
        structs: &HashMap<String, Vec<Item>>,
        depth: u32,
        out: &mut Vec<(u32, String)>,
    ) {
        for it in items {
            match it {
                Item::Addr(p, n) => out.push((base + p, n.clone())),
                Item::Struct(p, s) if depth < 4 => {
                    resolve(&structs[s], base + p, structs, depth + 1, out)
                }
                Item::Struct(..) => {}
            }
        }
    }
    instrs
        .into_iter()
        .map(|(name, items)| {
            let mut out = Vec::new();
            resolve(&items, 0, &structs, 0, &mut out);
            (name, out)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// Every address field genxml declares is covered by the scanner: the
/// command is rejected outright (privileged), handled by a hand-written
/// MI/PIPE_CONTROL/STATE_BASE_ADDRESS operand parser, or its declared
/// [`Layout`](gpu::scan::operands::Layout) accounts for that exact DWord
/// and bit.
#[test]
fn every_genxml_address_field_is_described() {
    let fields = address_fields();
    let mut described = 0;
    for (name, positions) in &fields {
        let row = COMMANDS
            .iter()
            .find(|s| s.name == name.trim_end_matches(" command"))
            .unwrap_or_else(|| panic!("{name}: no table row"));
        match row.op {
            Op::Privileged => {}
            Op::BatchStart
            | Op::CondBatchEnd
            | Op::StoreDataImm
            | Op::StoreRegMem
            | Op::LoadRegMem
            | Op::CopyMemMem
            | Op::Atomic
            | Op::FlushDw
            | Op::PipeControl
            | Op::SemaphoreWait
            | Op::StateBaseAddress
            | Op::PakInsert => {}
            Op::Gm(layout) => {
                for (pos, field) in positions {
                    assert!(
                        layout.describes(pos / 32, pos % 32),
                        "{name}: address field {field:?} at DWord {} bit {} not described",
                        pos / 32,
                        pos % 32
                    );
                    described += 1;
                }
            }
            other => panic!("{name} carries addresses but is classed {other:?}"),
        }
    }
    assert!(fields.len() >= 50, "only {} commands", fields.len());
    assert!(described >= 150, "only {described} fields described");
}

/// Graphics addresses genxml types `uint` that a layout audits: (command,
/// genxml field name, its first bit). media-driver programs each as a
/// buffer address (`AddResourceToCmd`, `mhw_vdbox_mfx_g9_X.h`).
const UINT_TYPED_ADDRESSES: &[(&str, &str, u32)] = &[
    (
        "MFX_VP8_PIC_STATE",
        "CoeffProbability Stream-In - Address",
        518,
    ),
    (
        "MFX_VP8_PIC_STATE",
        "Segmentation ID Stream - Address",
        1120,
    ),
];

#[test]
fn uint_typed_addresses_are_genxml_fields() {
    let t = tags(GEN9);
    for (cmd, field, start) in UINT_TYPED_ADDRESSES {
        let i = t
            .iter()
            .position(|x| x.name == "instruction" && x.get("name") == Some(cmd))
            .unwrap_or_else(|| panic!("{cmd}"));
        let found = t[i + 1..]
            .iter()
            .take_while(|x| x.name != "instruction")
            .any(|x| x.get("name") == Some(field) && x.get("start") == Some(&*start.to_string()));
        assert!(found, "{cmd}: {field} at bit {start}");
    }
}

/// The layouts describe nothing genxml does not: every absolute field of a
/// layout sits where genxml puts an address, or a field named like one
/// that genxml mistypes (SFC_STATE's `uint` frame addresses): catches a
/// mistyped DWord.
#[test]
fn layout_fields_sit_on_genxml_addresses() {
    let fields = address_fields();
    let named = flat_fields();
    for s in COMMANDS {
        let Op::Gm(layout) = s.op else { continue };
        let mut positions: Vec<u32> = fields
            .iter()
            .find(|(n, _)| n.trim_end_matches(" command") == s.name)
            .map(|(_, p)| p.iter().map(|(b, _)| *b).collect::<Vec<u32>>())
            .unwrap_or_default()
            .into_iter()
            .chain(
                UINT_TYPED_ADDRESSES
                    .iter()
                    .filter(|u| u.0 == s.name)
                    .map(|u| u.2),
            )
            .collect();
        if let Some((_, flat)) = named.iter().find(|(n, _)| n == s.name) {
            positions.extend(
                flat.iter()
                    .filter(|f| looks_like_address(&f.name))
                    .map(|f| f.bit),
            );
        }
        for f in layout.fields {
            let bit = u32::from(f.dword) * 32 + u32::from(f.shift);
            // Beyond genxml's stated length (MFX_PIPE_BUF_ADDR_STATE DWord
            // 65) genxml still lists the field, so it is found as well.
            assert!(
                positions.contains(&bit),
                "{}: layout field {} at DWord {} bit {} is not a genxml address",
                s.name,
                f.name,
                f.dword,
                f.shift
            );
        }
    }
}

/// The HCP_PAK_INSERT_OBJECT indirect payload the scanner audits is
/// genxml's: the payload group starts at DWord `PAK_PAYLOAD` with elements
/// of `PAK_DESCRIPTOR` DWords, and the descriptor struct has the size in
/// bits at DWord 0, the 64-bit address at DWord 1 and the memory
/// attributes at DWord 3 (whose compression and tiled-resource fields the
/// scanner refuses).
#[test]
fn pak_insert_payload_matches_genxml() {
    use gpu::scan::repr::{PAK_DESCRIPTOR, PAK_PAYLOAD};
    let t = tags(GEN9);
    let at = |name: &str| {
        t.iter()
            .position(|x| x.get("name") == Some(name) && !x.end)
            .unwrap_or_else(|| panic!("{name} not in genxml"))
    };
    // The instruction's payload group.
    let i = at("HCP_PAK_INSERT_OBJECT");
    let group = t[i..]
        .iter()
        .find(|x| x.name == "group" && !x.end)
        .expect("payload group");
    assert_eq!(group.get("start"), Some(&*(32 * PAK_PAYLOAD).to_string()));
    assert_eq!(group.get("size"), Some(&*(32 * PAK_DESCRIPTOR).to_string()));
    assert_eq!(group.get("count"), Some("0"));
    // The descriptor struct's fields.
    let s = at("HCP_PAK_INSERT_OBJECT_INDIRECT_PAYLOAD");
    assert_eq!(
        t[s].get("length"),
        Some(&*PAK_DESCRIPTOR.to_string()),
        "descriptor DWords"
    );
    let fields: Vec<_> = t[s + 1..]
        .iter()
        .take_while(|x| x.name == "field")
        .map(|x| (x.get("start"), x.get("end"), x.get("type")))
        .collect();
    assert!(fields.contains(&(Some("0"), Some("31"), Some("uint"))));
    assert!(fields.contains(&(Some("32"), Some("95"), Some("address"))));
    assert!(fields.contains(&(Some("96"), Some("127"), Some("MEMORYADDRESSATTRIBUTES"))));
    // Compression enable bit 9, tiled resource mode bits 14:13.
    let m = at("MEMORYADDRESSATTRIBUTES");
    let attr: Vec<_> = t[m + 1..]
        .iter()
        .filter(|x| x.name == "field" && !x.end)
        .map(|x| (x.get("name"), x.get("start"), x.get("end")))
        .take(6)
        .collect();
    assert!(attr.contains(&(Some("Memory Compression Enable"), Some("9"), Some("9"))));
    assert!(attr.contains(&(Some("Tiled Resource Mode"), Some("13"), Some("14"))));
}

/// A genxml field of an instruction, flattened: bit position in the
/// command, own name, type.
#[derive(Debug, Clone)]
struct Flat {
    bit: u32,
    name: String,
    ty: String,
}

/// Every leaf field of every instruction: struct-typed fields expanded
/// (the struct field itself is not listed), every element of a fixed-count
/// group, the first element of a variable one.
fn flat_fields() -> Vec<(String, Vec<Flat>)> {
    #[derive(Clone)]
    enum Item {
        Leaf(u32, String, String),
        Struct(u32, String),
    }
    let t = tags(GEN9);
    let struct_names: Vec<&str> = t
        .iter()
        .filter(|x| x.name == "struct" && !x.end)
        .filter_map(|x| x.get("name"))
        .collect();
    let mut structs: HashMap<String, Vec<Item>> = HashMap::new();
    let mut instrs: Vec<(String, Vec<Item>)> = Vec::new();
    let mut groups: Vec<(u32, u32, u32)> = Vec::new();
    let mut cur: Option<(bool, String, Vec<Item>)> = None;
    for x in &t {
        match (x.name, x.end) {
            ("instruction" | "struct", false) => {
                cur = Some((
                    x.name == "struct",
                    x.get("name").unwrap().to_string(),
                    Vec::new(),
                ));
                groups.clear();
            }
            ("instruction" | "struct", true) => {
                let (is_struct, name, items) = cur.take().unwrap();
                if is_struct {
                    structs.insert(name, items);
                } else {
                    instrs.push((name, items));
                }
            }
            ("group", false) => {
                let g = |k| x.get(k).unwrap().parse::<u32>().unwrap();
                if !x.self_closing {
                    groups.push((g("start"), g("count"), g("size")));
                }
            }
            ("group", true) => {
                groups.pop();
            }
            ("field", false) => {
                let Some((_, _, items)) = cur.as_mut() else {
                    continue;
                };
                let ty = x.get("type").unwrap_or("").to_string();
                let start: u32 = x.get("start").unwrap().parse().unwrap();
                let name = x.get("name").unwrap().to_string();
                let mut positions = vec![start];
                for &(gs, count, size) in groups.iter().rev() {
                    positions = positions
                        .iter()
                        .flat_map(|p| (0..count.max(1)).map(move |e| gs + e * size + p))
                        .collect();
                }
                for p in positions {
                    items.push(if struct_names.contains(&ty.as_str()) {
                        Item::Struct(p, ty.clone())
                    } else {
                        Item::Leaf(p, name.clone(), ty.clone())
                    });
                }
            }
            _ => {}
        }
    }
    fn resolve(
        items: &[Item],
        base: u32,
        structs: &HashMap<String, Vec<Item>>,
        depth: u32,
        out: &mut Vec<Flat>,
    ) {
        for it in items {
            match it {
                Item::Leaf(p, name, ty) => out.push(Flat {
                    bit: base + p,
                    name: name.clone(),
                    ty: ty.clone(),
                }),
                Item::Struct(p, s) if depth < 4 => {
                    resolve(&structs[s], base + p, structs, depth + 1, out)
                }
                Item::Struct(..) => {}
            }
        }
    }
    instrs
        .into_iter()
        .map(|(name, items)| {
            let mut out = Vec::new();
            resolve(&items, 0, &structs, 0, &mut out);
            (name.trim_end_matches(" command").to_string(), out)
        })
        .collect()
}

/// Named like a graphics address (whatever its genxml type).
fn looks_like_address(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("address") || n.contains("base") || n.contains("pointer")
}

/// Why a field named like an address is not one.
#[derive(Debug, Clone, Copy)]
enum NotAddress {
    /// An offset the hardware adds to the named base, which the scanner
    /// audits with its size; accesses past that size are discarded.
    OffsetFrom(&'static str),
    /// An enable or mode bit, not an address.
    Flag,
    /// A value used as data (a vertex index, a coordinate).
    Inline,
    /// An offset into engine-internal storage (URB, HuC memory), not GM.
    Internal,
    /// An MMIO register offset, checked against the register whitelist.
    Register,
    /// A bit position inside a buffer whose own address is audited.
    BitPosition(&'static str),
}

const DSB: &str = "Dynamic State Base Address";
const SSB: &str = "Surface State Base Address (binding tables: the binding table pool)";
const ISB: &str = "Instruction Base Address";
const IOB: &str = "Indirect Object Base Address";
const MFX_BITSTREAM: &str =
    "MFX Indirect Bitstream Object (MFX_IND_OBJ_BASE_ADDR_STATE, bounded by its upper bound)";
const MFX_MV: &str = "MFX Indirect MV Object (MFX_IND_OBJ_BASE_ADDR_STATE)";
const MFX_PAK_BSE: &str = "MFC Indirect PAK-BSE Object (MFX_IND_OBJ_BASE_ADDR_STATE)";
const MFD_IT: &str = "the MFD indirect IT objects (MFX_IND_OBJ_BASE_ADDR_STATE)";
const HCP_BITSTREAM: &str = "HCP Indirect Bitstream Object (HCP_IND_OBJ_BASE_ADDR_STATE)";

/// Fields of accepted commands that genxml names like addresses but that
/// are not graphics addresses, each with the reason (PRM vol 2a; the
/// offsets' bases are audited where they are set). `"*"` as a command
/// matches every command.
const NOT_ADDRESSES: &[(&str, &str, NotAddress)] = &[
    ("3DPRIMITIVE", "Base Vertex Location", NotAddress::Inline),
    ("*", "Surface State Pointer", NotAddress::OffsetFrom(SSB)),
    (
        "*",
        "Pointer to VS Binding Table",
        NotAddress::OffsetFrom(SSB),
    ),
    (
        "*",
        "Pointer to HS Binding Table",
        NotAddress::OffsetFrom(SSB),
    ),
    (
        "*",
        "Pointer to DS Binding Table",
        NotAddress::OffsetFrom(SSB),
    ),
    (
        "*",
        "Pointer to GS Binding Table",
        NotAddress::OffsetFrom(SSB),
    ),
    (
        "*",
        "Pointer to PS Binding Table",
        NotAddress::OffsetFrom(SSB),
    ),
    (
        "*",
        "Pointer to VS Sampler State",
        NotAddress::OffsetFrom(DSB),
    ),
    (
        "*",
        "Pointer to HS Sampler State",
        NotAddress::OffsetFrom(DSB),
    ),
    (
        "*",
        "Pointer to DS Sampler State",
        NotAddress::OffsetFrom(DSB),
    ),
    (
        "*",
        "Pointer to GS Sampler State",
        NotAddress::OffsetFrom(DSB),
    ),
    (
        "*",
        "Pointer to PS Sampler State",
        NotAddress::OffsetFrom(DSB),
    ),
    (
        "3DSTATE_BLEND_STATE_POINTERS",
        "Blend State Pointer Valid",
        NotAddress::Flag,
    ),
    (
        "3DSTATE_BLEND_STATE_POINTERS",
        "Blend State Pointer",
        NotAddress::OffsetFrom(DSB),
    ),
    (
        "3DSTATE_CC_STATE_POINTERS",
        "Color Calc State Pointer Valid",
        NotAddress::Flag,
    ),
    (
        "3DSTATE_CC_STATE_POINTERS",
        "Color Calc State Pointer",
        NotAddress::OffsetFrom(DSB),
    ),
    (
        "3DSTATE_SCISSOR_STATE_POINTERS",
        "Scissor Rect Pointer",
        NotAddress::OffsetFrom(DSB),
    ),
    (
        "3DSTATE_VIEWPORT_STATE_POINTERS_CC",
        "CC Viewport Pointer",
        NotAddress::OffsetFrom(DSB),
    ),
    (
        "3DSTATE_VIEWPORT_STATE_POINTERS_SF_CLIP",
        "SF Clip Viewport Pointer",
        NotAddress::OffsetFrom(DSB),
    ),
    ("*", "Kernel Start Pointer", NotAddress::OffsetFrom(ISB)),
    ("*", "Kernel Start Pointer 0", NotAddress::OffsetFrom(ISB)),
    ("*", "Kernel Start Pointer 1", NotAddress::OffsetFrom(ISB)),
    ("*", "Kernel Start Pointer 2", NotAddress::OffsetFrom(ISB)),
    (
        "3DSTATE_DS",
        "DUAL_PATCH Kernel Start Pointer",
        NotAddress::OffsetFrom(ISB),
    ),
    (
        "STATE_SIP",
        "System Instruction Pointer",
        NotAddress::OffsetFrom(ISB),
    ),
    (
        "3DSTATE_SO_BUFFER",
        "Stream Output Buffer Offset Address Enable",
        NotAddress::Flag,
    ),
    ("3DSTATE_URB_CLEAR", "URB Address", NotAddress::Internal),
    (
        "3DSTATE_URB_VS",
        "VS URB Starting Address",
        NotAddress::Internal,
    ),
    (
        "3DSTATE_URB_HS",
        "HS URB Starting Address",
        NotAddress::Internal,
    ),
    (
        "3DSTATE_URB_DS",
        "DS URB Starting Address",
        NotAddress::Internal,
    ),
    (
        "3DSTATE_URB_GS",
        "GS URB Starting Address",
        NotAddress::Internal,
    ),
    (
        "3DSTATE_VERTEX_BUFFERS",
        "Address Modify Enable",
        NotAddress::Flag,
    ),
    (
        "GPGPU_WALKER",
        "Indirect Data Start Address",
        NotAddress::OffsetFrom(IOB),
    ),
    (
        "MEDIA_OBJECT_WALKER",
        "Indirect Data Start Address",
        NotAddress::OffsetFrom(IOB),
    ),
    (
        "MEDIA_CURBE_LOAD",
        "CURBE Data Start Address",
        NotAddress::OffsetFrom(DSB),
    ),
    (
        "MEDIA_INTERFACE_DESCRIPTOR_LOAD",
        "Interface Descriptor Data Start Address",
        NotAddress::OffsetFrom(DSB),
    ),
    (
        "HCP_BSD_OBJECT",
        "Indirect BSD Data Start Address",
        NotAddress::OffsetFrom(HCP_BITSTREAM),
    ),
    (
        "HCP_PAK_OBJECT",
        "Current LCU X Address",
        NotAddress::Inline,
    ),
    (
        "HCP_PAK_OBJECT",
        "Current LCU Y Address",
        NotAddress::Inline,
    ),
    ("*", "Load Bitstream Pointer Per Slice", NotAddress::Flag),
    (
        "MFC_AVC_PAK_OBJECT",
        "Indirect PAK-MV Data Start Address Offset",
        NotAddress::OffsetFrom(MFX_MV),
    ),
    (
        "MFX_VP8_PAK_OBJECT",
        "Indirect PAK-MV Data Start Address Offset",
        NotAddress::OffsetFrom(MFX_MV),
    ),
    (
        "MFC_MPEG2_SLICEGROUP_STATE",
        "Indirect PAK-BSE Data Start Address",
        NotAddress::OffsetFrom(MFX_PAK_BSE),
    ),
    (
        "MFX_AVC_SLICE_STATE",
        "Indirect PAK-BSE Data Start Address",
        NotAddress::OffsetFrom(MFX_PAK_BSE),
    ),
    (
        "*",
        "Indirect BSD Data Start Address",
        NotAddress::OffsetFrom(MFX_BITSTREAM),
    ),
    (
        "MFD_JPEG_BSD_OBJECT",
        "Indirect Data Start Address",
        NotAddress::OffsetFrom(MFX_BITSTREAM),
    ),
    (
        "MFX_STITCH_OBJECT",
        "Indirect Data Start Address",
        NotAddress::OffsetFrom(MFX_PAK_BSE),
    ),
    (
        "MFD_IT_OBJECT",
        "Indirect IT-MV Data Start Address Offset",
        NotAddress::OffsetFrom(MFD_IT),
    ),
    (
        "MFD_IT_OBJECT",
        "Indirect IT-COEFF Data Start Address Offset",
        NotAddress::OffsetFrom(MFD_IT),
    ),
    (
        "MFD_IT_OBJECT",
        "Indirect IT-DBLK Control Data Start Address Offset",
        NotAddress::OffsetFrom(MFD_IT),
    ),
    (
        "MFX_VP8_ENCODER_CFG",
        "Frame Header Bin Buffer QIndex Update Pointer",
        NotAddress::BitPosition("the VP8 frame header buffer"),
    ),
    (
        "MFX_VP8_ENCODER_CFG",
        "Frame Header Bin Buffer Loop Filter Update Pointer",
        NotAddress::BitPosition("the VP8 frame header buffer"),
    ),
    (
        "MFX_VP8_ENCODER_CFG",
        "Frame Header Bin Buffer Token Update Pointer",
        NotAddress::BitPosition("the VP8 frame header buffer"),
    ),
    (
        "MFX_VP8_ENCODER_CFG",
        "Frame Header Bin Buffer MV Update Pointer",
        NotAddress::BitPosition("the VP8 frame header buffer"),
    ),
    (
        "MI_BATCH_BUFFER_START",
        "Address Space Indicator",
        NotAddress::Flag,
    ),
    ("MI_FLUSH_DW", "Destination Address Type", NotAddress::Flag),
    ("PIPE_CONTROL", "Destination Address Type", NotAddress::Flag),
    (
        "PIPE_CONTROL",
        "Indirect State Pointers Disable",
        NotAddress::Flag,
    ),
    (
        "MI_LOAD_REGISTER_MEM",
        "Register Address",
        NotAddress::Register,
    ),
    (
        "MI_STORE_REGISTER_MEM",
        "Register Address",
        NotAddress::Register,
    ),
    (
        "MI_LOAD_REGISTER_REG",
        "Source Register Address",
        NotAddress::Register,
    ),
    (
        "MI_LOAD_REGISTER_REG",
        "Destination Register Address",
        NotAddress::Register,
    ),
    (
        "STATE_BASE_ADDRESS",
        "General State Base Address Modify Enable",
        NotAddress::Flag,
    ),
    (
        "STATE_BASE_ADDRESS",
        "Surface State Base Address Modify Enable",
        NotAddress::Flag,
    ),
    (
        "STATE_BASE_ADDRESS",
        "Dynamic State Base Address Modify Enable",
        NotAddress::Flag,
    ),
    (
        "STATE_BASE_ADDRESS",
        "Indirect Object Base Address Modify Enable",
        NotAddress::Flag,
    ),
    (
        "STATE_BASE_ADDRESS",
        "Instruction Base Address Modify Enable",
        NotAddress::Flag,
    ),
    (
        "STATE_BASE_ADDRESS",
        "Bindless Surface State Base Address Modify Enable",
        NotAddress::Flag,
    ),
    (
        "VDENC_IMG_STATE",
        "Block-Based Skip Enable",
        NotAddress::Flag,
    ),
    ("VDENC_IMG_STATE", "Block-Based Skip Type", NotAddress::Flag),
];

impl NotAddress {
    /// The reason, in words.
    fn describe(self) -> String {
        match self {
            NotAddress::OffsetFrom(base) => format!("an offset from {base}"),
            NotAddress::Flag => "an enable or mode bit".into(),
            NotAddress::Inline => "inline data".into(),
            NotAddress::Internal => "an offset in engine-internal storage".into(),
            NotAddress::Register => "an MMIO register offset".into(),
            NotAddress::BitPosition(buf) => format!("a bit position in {buf}"),
        }
    }
}

/// Field types that hold attributes of the address before them (cache
/// control, compression, tiling), never an address.
const ATTRIBUTE_TYPES: &[&str] = &["MEMORYADDRESSATTRIBUTES", "HEVC_ARBITRATION_PRIORITY"];

/// The shortest valid form of the command of row `s` (genxml length if
/// it has one), every DWord after the header zero.
fn zeroed(s: &CmdSpec, genxml_len: Option<u32>) -> Vec<u32> {
    let (len, bias) = match s.len {
        Len::Fixed(n) => (u32::from(n), u32::from(n)),
        Len::Field { bias, min, max, .. } => {
            (genxml_len.unwrap_or(min).clamp(min, max), u32::from(bias))
        }
    };
    let mut w = vec![0u32; len as usize];
    w[0] = s.opcode.header_bits() | (len - bias);
    w
}

/// DWords the hand-written operand parser of `op` remaps in `w` (with the
/// enables set that make the operand used).
fn hand_parsed_dwords(s: &'static CmdSpec, w: &mut [u32]) -> Vec<usize> {
    use gpu::scan::{decode, CommandRepr};
    // Turn on what makes the operand used: post-sync writes, GGTT,
    // indirect payload, modify enables.
    match s.op {
        Op::PipeControl => w[1] |= 1 << 14 | 1 << 24,
        Op::FlushDw => {
            w[0] |= 1 << 14;
            w[1] |= 1 << 2;
        }
        Op::PakInsert => {
            w[1] |= 1 << 31;
        }
        Op::StateBaseAddress => {
            for d in [1, 4, 6, 8, 10, 16] {
                w[d] |= 1;
            }
        }
        _ => w[0] |= 1 << 22,
    }
    let engine = Engine::ALL
        .into_iter()
        .find(|&e| s.engines.contains(e))
        .unwrap();
    let c = decode(engine, w, 0).unwrap_or_else(|e| panic!("{}: {e:?}", s.name));
    if matches!(s.op, Op::PakInsert) {
        return vec![3];
    }
    match CommandRepr::parse(&c).unwrap_or_else(|e| panic!("{}: {e:?}", s.name)) {
        CommandRepr::BatchStart { target: m, .. }
        | CommandRepr::CondBatchEnd { mem: m }
        | CommandRepr::StoreDataImm { mem: m }
        | CommandRepr::StoreRegMem { mem: m, .. }
        | CommandRepr::LoadRegMem { mem: m, .. }
        | CommandRepr::Atomic { mem: m }
        | CommandRepr::FlushDw { mem: m, .. }
        | CommandRepr::PipeControl { mem: m, .. }
        | CommandRepr::SemaphoreWait { mem: m, .. } => vec![m.dword],
        CommandRepr::CopyMemMem { dst, src } => vec![dst.dword, src.dword],
        CommandRepr::StateBaseAddress(v) => v.bases().bases.iter().map(|b| b.mem.dword).collect(),
        _ => Vec::new(),
    }
}

/// Every genxml field named like an address (`*Address*`, `*Base*`,
/// `*Pointer*`, any type) of every command the scanner accepts is either
/// audited and remapped (a field of the command's
/// [`Layout`](gpu::scan::operands::Layout), or an operand of its
/// hand-written parser) or listed in [`NOT_ADDRESSES`] with the reason it
/// is not an address. A new such field, or a command made acceptable
/// whose address-like fields nobody looked at, fails here.
#[test]
fn every_address_like_field_is_audited_or_explained() {
    let (instrs, _) = parse_oracle();
    let lengths: HashMap<String, Option<u32>> = instrs
        .iter()
        .map(|o| (o.name.trim_end_matches(" command").to_string(), o.length))
        .collect();
    let mut used = vec![false; NOT_ADDRESSES.len()];
    let (mut audited, mut explained) = (0, 0);
    let mut missing = Vec::new();
    for (cmd, fields) in flat_fields() {
        let row = COMMANDS
            .iter()
            .find(|s| s.name == cmd)
            .unwrap_or_else(|| panic!("{cmd}: no table row"));
        let refused = matches!(
            row.op,
            Op::Privileged | Op::Unsupported(_) | Op::GmOperands | Op::SemaphoreSignal
        );
        let hand = match row.op {
            Op::Gm(_) | Op::Plain | Op::Noop | Op::LoadRegImm | Op::LoadRegReg => Vec::new(),
            _ if refused => Vec::new(),
            _ => hand_parsed_dwords(row, &mut zeroed(row, lengths[&cmd])),
        };
        for f in fields.iter().filter(|f| looks_like_address(&f.name)) {
            if ATTRIBUTE_TYPES.contains(&f.ty.as_str()) {
                continue;
            }
            if let Some(i) = NOT_ADDRESSES
                .iter()
                .position(|(c, n, _)| (*c == "*" || *c == cmd) && *n == f.name)
            {
                used[i] = true;
                explained += 1;
                continue;
            }
            if refused {
                continue;
            }
            let (dword, bit) = (f.bit / 32, f.bit % 32);
            let covered = match row.op {
                Op::Gm(layout) => layout.describes(dword, bit),
                _ => hand.contains(&(dword as usize)),
            };
            if covered {
                audited += 1;
            } else {
                missing.push(format!(
                    "{cmd}: {:?} ({}) at DWord {dword} bit {bit}",
                    f.name, f.ty
                ));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "address-like fields neither audited nor explained:\n{}",
        missing.join("\n")
    );
    for (i, (c, n, why)) in NOT_ADDRESSES.iter().enumerate() {
        assert!(
            used[i],
            "stale entry ({c}, {n}: {}): no such genxml field",
            why.describe()
        );
    }
    assert!(audited >= 170 && explained >= 80, "{audited} / {explained}");
}
