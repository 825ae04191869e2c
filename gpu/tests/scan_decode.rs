//! Decoder tests: header parsing, lengths, per-engine validity, typed
//! errors, blitter commands (absent from genxml; facts from PRM vol 2a and
//! i915), and a proptest that arbitrary DWords never panic the decoder.

use gpu::engine::Engine;
use gpu::scan::repr::{CommandRepr, PostSync};
use gpu::scan::table::{lookup, Len, Op, Opcode, COMMANDS};
use gpu::scan::{decode, Commands, DecodeErrorKind};
use proptest::prelude::*;

const MI_NOOP: u32 = 0;
const MI_BATCH_BUFFER_END: u32 = 0x0a << 23;
const MI_SDI: u32 = (0x20 << 23) | 2; // 4 DWords
const PIPE_CONTROL: u32 = 0x7a00_0004; // 6 DWords
const XY_COLOR_BLT: u32 = (2 << 29) | (0x50 << 22) | 5;
const XY_SRC_COPY_BLT: u32 = (2 << 29) | (0x53 << 22) | 8;
const XY_FAST_COPY_BLT: u32 = (2 << 29) | (0x42 << 22) | 8;

#[test]
fn mi_noop_and_store_data_imm() {
    let buf = [MI_NOOP, MI_SDI, 0x1000, 0, 0xdead_beef, MI_BATCH_BUFFER_END];
    let cmds: Vec<_> = Commands::new(Engine::Render, &buf)
        .map(|r| r.unwrap())
        .map(|(o, c)| (o, c.name(), c.len()))
        .collect();
    assert_eq!(
        cmds,
        vec![
            (0, "MI_NOOP", 1),
            (1, "MI_STORE_DATA_IMM", 4),
            (5, "MI_BATCH_BUFFER_END", 1)
        ]
    );
}

#[test]
fn store_data_imm_qword_form_and_bad_length() {
    let q = (0x20 << 23) | (1 << 21) | 3;
    let b = [q, 0x2000, 0, 1, 2];
    let c = decode(Engine::Blitter, &b, 0).unwrap();
    assert_eq!(c.len(), 5);
    match CommandRepr::parse(&c).unwrap() {
        CommandRepr::StoreDataImm { mem } => {
            assert_eq!((mem.addr, mem.size, mem.write), (0x2000, 8, true));
        }
        r => panic!("{r:?}"),
    }
    let e = decode(Engine::Render, &[(0x20 << 23) | 4, 0, 0, 0, 0, 0], 0).unwrap_err();
    assert_eq!(
        e.kind,
        DecodeErrorKind::BadLength {
            len: 6,
            min: 4,
            max: 5
        }
    );
}

#[test]
fn typed_errors_name_engine_offset_header() {
    // Unknown MI opcode 0x3f.
    let e = decode(Engine::Video, &[MI_NOOP, 0x3f << 23], 1).unwrap_err();
    assert_eq!(
        (e.engine, e.offset, e.header),
        (Engine::Video, 1, 0x3f << 23)
    );
    assert_eq!(e.kind, DecodeErrorKind::UnknownOpcode);
    let msg = e.to_string();
    assert!(msg.contains("vcs") && msg.contains("DWord 1") && msg.contains("unknown opcode"));
    // Reserved command types 1 and 4..7.
    for t in [1u32, 4, 5, 6, 7] {
        let e = decode(Engine::Render, &[t << 29], 0).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::ReservedType, "type {t}");
    }
    // A 3D command on the blitter, a blit on the render engine.
    let e = decode(Engine::Blitter, &[PIPE_CONTROL, 0, 0, 0, 0, 0], 0).unwrap_err();
    assert_eq!(
        e.kind,
        DecodeErrorKind::WrongEngine {
            name: "PIPE_CONTROL"
        }
    );
    let e = decode(Engine::Render, &[XY_COLOR_BLT, 0, 0, 0, 0, 0, 0], 0).unwrap_err();
    assert_eq!(
        e.kind,
        DecodeErrorKind::WrongEngine {
            name: "XY_COLOR_BLT"
        }
    );
    // Running past the buffer end.
    let e = decode(Engine::Render, &[MI_NOOP, MI_SDI, 0], 1).unwrap_err();
    assert_eq!(
        e.kind,
        DecodeErrorKind::Truncated {
            len: 4,
            available: 2
        }
    );
    let e = decode(Engine::Render, &[MI_NOOP], 1).unwrap_err();
    assert!(matches!(e.kind, DecodeErrorKind::Truncated { .. }));
}

#[test]
fn same_key_means_different_commands_per_engine() {
    // Pipeline 2, opcode 0, sub-opcode 0: MEDIA_VFE_STATE on render,
    // MFX_PIPE_MODE_SELECT on video.
    let h = 0x7000_0000;
    assert_eq!(lookup(Engine::Render, h).unwrap().name, "MEDIA_VFE_STATE");
    assert_eq!(
        lookup(Engine::Video, h).unwrap().name,
        "MFX_PIPE_MODE_SELECT"
    );
    assert!(lookup(Engine::Blitter, h).is_none());
    // Pipeline 2, opcode 4, sub 0: MFX_VP8_PIC_STATE on video,
    // VEBOX_SURFACE_STATE on the video-enhancement engine.
    let h = 0x7400_0000;
    assert_eq!(lookup(Engine::Video, h).unwrap().name, "MFX_VP8_PIC_STATE");
    assert_eq!(
        lookup(Engine::VideoEnhance, h).unwrap().name,
        "VEBOX_SURFACE_STATE"
    );
}

/// PRM vol 2a BCS opcodes (bits 28:22), cross-checked with i915.
const BLITTER: &[(&str, u8)] = &[
    ("XY_SETUP_BLT", 0x01),
    ("XY_SETUP_CLIP_BLT", 0x03),
    ("XY_SETUP_MONO_PATTERN_SL_BLT", 0x11),
    ("XY_PIXEL_BLT", 0x24),
    ("XY_SCANLINES_BLT", 0x25),
    ("XY_TEXT_BLT", 0x26),
    ("XY_TEXT_IMMEDIATE_BLT", 0x31),
    ("COLOR_BLT", 0x40),
    ("XY_FAST_COPY_BLT", 0x42),
    ("SRC_COPY_BLT", 0x43),
    ("XY_COLOR_BLT", 0x50),
    ("XY_PAT_BLT", 0x51),
    ("XY_MONO_PAT_BLT", 0x52),
    ("XY_SRC_COPY_BLT", 0x53),
    ("XY_MONO_SRC_COPY_BLT", 0x54),
    ("XY_FULL_BLT", 0x55),
    ("XY_FULL_MONO_SRC_BLT", 0x56),
    ("XY_FULL_MONO_PATTERN_BLT", 0x57),
    ("XY_FULL_MONO_PATTERN_MONO_SRC_BLT", 0x58),
    ("XY_MONO_PAT_FIXED_BLT", 0x59),
    ("XY_MONO_SRC_COPY_IMMEDIATE_BLT", 0x71),
    ("XY_PAT_BLT_IMMEDIATE", 0x72),
    ("XY_SRC_COPY_CHROMA_BLT", 0x73),
    ("XY_FULL_IMMEDIATE_PATTERN_BLT", 0x74),
    ("XY_FULL_MONO_SRC_IMMEDIATE_PATTERN_BLT", 0x75),
    ("XY_PAT_CHROMA_BLT", 0x76),
    ("XY_PAT_CHROMA_BLT_IMMEDIATE", 0x77),
];

#[test]
fn blitter_table_matches_prm() {
    let rows: Vec<_> = COMMANDS
        .iter()
        .filter(|s| matches!(s.opcode, Opcode::Blt(_)))
        .collect();
    assert_eq!(
        rows.len(),
        BLITTER.len(),
        "every blitter row is listed here"
    );
    for &(name, op) in BLITTER {
        let h = (2 << 29) | (u32::from(op) << 22) | 1; // 3 DWords
        let s = lookup(Engine::Blitter, h).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(s.name, name);
        // Blitter DWord Length: bits 7:0, bias 2.
        assert!(
            matches!(
                s.len,
                Len::Field {
                    bits: 8,
                    bias: 2,
                    ..
                }
            ),
            "{name}"
        );
        for e in [Engine::Render, Engine::Video, Engine::VideoEnhance] {
            assert!(lookup(e, h).is_none(), "{name} must be blitter-only");
        }
    }
}

#[test]
fn blit_surfaces_and_lengths() {
    // XY_COLOR_BLT (7 DWords): pitch 256, rows 0..16, destination 0x10000.
    let b = [XY_COLOR_BLT, 256, 0, 16 << 16 | 64, 0x10000, 0, 0xff];
    let c = decode(Engine::Blitter, &b, 0).unwrap();
    assert_eq!((c.name(), c.len()), ("XY_COLOR_BLT", 7));
    assert_eq!(c.spec().op, Op::XyColorBlt);
    match CommandRepr::parse(&c).unwrap() {
        CommandRepr::Blit { dst, src: None } => {
            assert_eq!((dst.addr, dst.size, dst.dword), (0x10000, 256 * 16, 4));
        }
        r => panic!("{r:?}"),
    }
    // XY_SRC_COPY_BLT / XY_FAST_COPY_BLT (10 DWords).
    for h in [XY_SRC_COPY_BLT, XY_FAST_COPY_BLT] {
        let b = [
            h,
            512,
            0,
            8 << 16 | 8,
            0x20000,
            0,
            4 << 16,
            1024,
            0x30000,
            0,
        ];
        let c = decode(Engine::Blitter, &b, 0).unwrap();
        assert_eq!(c.len(), 10);
        match CommandRepr::parse(&c).unwrap() {
            CommandRepr::Blit {
                dst,
                src: Some(src),
            } => {
                assert_eq!((dst.addr, dst.size), (0x20000, 512 * 8));
                assert_eq!((src.addr, src.size, src.write), (0x30000, 1024 * 12, false));
            }
            r => panic!("{r:?}"),
        }
    }
    // A 9-DWord XY_SRC_COPY_BLT (32-bit address form) is rejected.
    let e = decode(Engine::Blitter, &[XY_SRC_COPY_BLT - 1; 9], 0).unwrap_err();
    assert!(matches!(e.kind, DecodeErrorKind::BadLength { len: 9, .. }));
}

#[test]
fn pipe_control_and_batch_start_fields() {
    // Post-sync write immediate, GGTT destination 0x4000.
    let pc = [PIPE_CONTROL, (1 << 24) | (1 << 14), 0x4000, 0, 7, 0];
    let c = decode(Engine::Render, &pc, 0).unwrap();
    match CommandRepr::parse(&c).unwrap() {
        CommandRepr::PipeControl {
            post_sync,
            store_index,
            lri_post_sync,
            mem,
        } => {
            assert_eq!(post_sync, PostSync::WriteImmediate);
            assert!(!store_index && !lri_post_sync && mem.ggtt);
            assert_eq!((mem.addr, mem.size, mem.dword), (0x4000, 8, 2));
        }
        r => panic!("{r:?}"),
    }
    // Second-level, PPGTT batch start at 0x1_0000_8000.
    let bb = [(0x31 << 23) | (1 << 22) | (1 << 8) | 1, 0x8000, 1];
    let c = decode(Engine::Video, &bb, 0).unwrap();
    match CommandRepr::parse(&c).unwrap() {
        CommandRepr::BatchStart {
            target,
            second_level,
            ..
        } => {
            assert!(second_level && !target.ggtt);
            assert_eq!(target.addr, 0x1_0000_8000);
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn load_register_imm_needs_pairs() {
    let b = [(0x22 << 23) | 1, 0x2094, 0];
    let c = decode(Engine::Render, &b, 0).unwrap();
    assert!(matches!(
        CommandRepr::parse(&c).unwrap(),
        CommandRepr::LoadRegImm {
            pairs: [0x2094, 0],
            byte_disables: 0
        }
    ));
    let b = [(0x22 << 23) | 2, 0x2094, 0, 0x2098];
    let c = decode(Engine::Render, &b, 0).unwrap();
    assert!(CommandRepr::parse(&c).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary DWords: the decoder never panics, every decoded command
    /// lies inside the buffer and within its table bounds, and iteration
    /// ends after at most one step per DWord.
    #[test]
    fn random_streams_decode_safely(
        words in proptest::collection::vec(any::<u32>(), 0..64),
        engine in 0usize..4,
    ) {
        let engine = Engine::ALL[engine];
        let mut steps = 0;
        let mut covered = 0;
        for item in Commands::new(engine, &words) {
            steps += 1;
            prop_assert!(steps <= words.len());
            match item {
                Ok((off, c)) => {
                    prop_assert_eq!(off, covered);
                    covered += c.len();
                    prop_assert!(covered <= words.len());
                    prop_assert!(c.spec().engines.contains(engine));
                    if let Len::Field { min, max, .. } = c.spec().len {
                        prop_assert!((min as usize) <= c.len() && c.len() <= max as usize);
                    }
                    let _ = CommandRepr::parse(&c);
                }
                Err(e) => {
                    prop_assert_eq!(e.offset, covered);
                    let _ = e.to_string();
                }
            }
        }
    }
}

/// The blitter commands whose operands are described have their Gen8+
/// (64-bit address) lengths, exactly: the 32-bit forms are malformed, so a
/// DWord can never be read at the wrong position (PRM vol 2a BCS).
#[test]
fn described_blitter_commands_have_gen8_lengths() {
    for (name, op, len) in [
        ("XY_SETUP_BLT", 0x01u32, 10usize),
        ("XY_SETUP_MONO_PATTERN_SL_BLT", 0x11, 10),
        ("XY_PIXEL_BLT", 0x24, 2),
        ("XY_SCANLINES_BLT", 0x25, 3),
        ("XY_PAT_BLT", 0x51, 8),
        ("XY_MONO_PAT_BLT", 0x52, 10),
        ("XY_COLOR_BLT", 0x50, 7),
        ("XY_SRC_COPY_BLT", 0x53, 10),
    ] {
        let h = |n: usize| (2 << 29) | (op << 22) | (n as u32 - 2);
        let words = vec![0u32; 16];
        let mut b = words.clone();
        b[0] = h(len);
        let c = decode(Engine::Blitter, &b, 0).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((c.name(), c.len()), (name, len));
        for bad in [len - 1, len + 1].into_iter().filter(|&n| n >= 2) {
            let mut b = words.clone();
            b[0] = h(bad);
            let e = decode(Engine::Blitter, &b, 0).unwrap_err();
            assert!(
                matches!(e.kind, DecodeErrorKind::BadLength { .. }),
                "{name} with {bad} DWords"
            );
        }
    }
}
