//! The authenticated stream (ARCHITECTURE.md "Stream format and
//! authentication"): a
//! pre-shared key, a handshake that proves to each side that the other
//! knows it, and per-record protection bound to the session and to the
//! record's position. No cryptography of our own: BLAKE3 (keyed hash and key
//! derivation) for the handshake, ChaCha20-Poly1305 (RFC 8439) for records.
//!
//! # Handshake
//! `K` is the migration key: BLAKE3 `derive_key` of the operator's
//! `migrate_key=` bytes ([`MigrationKey`]). Messages are laid out in
//! [`crate::wire`].
//!
//! 1. hello, source to destination: what is migrated and the source's fresh
//!    nonce `Ns`;
//! 2. challenge, destination to source: its verdict on the hello, the
//!    session's mode (encrypted records if either side asks), its fresh
//!    nonce `Nd`, and its proof `Pd = BLAKE3-keyed(K, "dest" label || T)`,
//!    where `T = BLAKE3(hello || challenge[..40])` is the transcript;
//! 3. proof, source to destination: `Ps = BLAKE3-keyed(K, "source" label || T)`.
//!
//! The source checks `Pd` before it sends anything of the guest, the
//! destination checks `Ps` before it accepts any record. Both nonces are
//! fresh, so a proof from an earlier session never fits a new transcript: a
//! recorded migration replayed to a destination fails its proof check, and
//! a recorded challenge does not convince a source. A peer that does not
//! know `K` (or someone changing the hello or challenge on the way, which
//! is the same thing to the proofs) gets [`crate::SourceError::KeyMismatch`]
//! or [`crate::ReceiveError::KeyMismatch`] on the side that checked; damage
//! on the wire fails the messages' CRC first and is reported as such.
//!
//! A source whose check of `Pd` fails still sends its own proof, so that
//! the destination reaches the same verdict from its own check instead of
//! waiting: the proof covers both fresh nonces and is useless elsewhere.
//!
//! # Records
//! Each direction has its own session key,
//! `BLAKE3-derive_key(direction label, K || T)`: fresh per session (both
//! nonces are in `T`), so a record from another migration does not verify
//! in this one even with its sequence field set right. The ChaCha20-Poly1305
//! nonce is the record's sequence number as the receiver counts it, so a
//! record replayed or moved to another position does not verify either;
//! the sealer refuses to wrap its count (a nonce is never used twice). The
//! tag covers the header and the payload (authentication only,
//! `migrate_encrypt=off`: both are associated data) or the header with the
//! payload encrypted (`migrate_encrypt=on`). One AEAD serves both modes, so
//! there is one way a record is protected.
//!
//! The key material is kept in memory for the migration's length and not
//! wiped afterwards (the monitor has no swap and no other tenant in its
//! address space).

use core::fmt;

use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::{AeadInPlace, ChaCha20Poly1305, KeyInit};

use crate::wire::{
    crc_ok, le32, put_crc, ChallengeRepr, HelloRepr, Record, Refusal, WireError, CHALLENGE_LEN,
    CHALLENGE_SIGNED_LEN, HELLO_LEN, NONCE_LEN, PROOF_LEN, PROOF_MAC_LEN, RECORD_HEAD_LEN, TAG_LEN,
};

/// Bytes of a migration key after derivation.
pub const KEY_LEN: usize = 32;
/// Fewest bytes of key material `migrate_key=` takes (128 bits).
pub const MIN_KEY_BYTES: usize = 16;
/// Most bytes of key material `migrate_key=` takes.
pub const MAX_KEY_BYTES: usize = 64;

const CTX_KEY: &str = "gmig-rs 2026-12 migration pre-shared key";
const CTX_FINGERPRINT: &str = "gmig-rs 2026-12 migration key fingerprint";
const CTX_SOURCE_TO_DEST: &str = "gmig-rs 2026-12 migration records, source to destination";
const CTX_DEST_TO_SOURCE: &str = "gmig-rs 2026-12 migration records, destination to source";
const LABEL_DEST_PROOF: &[u8; 16] = b"gmig proof: dest";
const LABEL_SOURCE_PROOF: &[u8; 16] = b"gmig proof: src ";

/// Why `migrate_key=` was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not an even number of hex digits between 32 and 128.
    Length(usize),
    /// A character that is not a hex digit, at this position.
    NotHex(usize),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length(n) => write!(
                f,
                "{n} hex digits, expected an even number from {} to {}",
                MIN_KEY_BYTES * 2,
                MAX_KEY_BYTES * 2
            ),
            Self::NotHex(at) => write!(f, "character {at} is not a hex digit"),
        }
    }
}

/// The pre-shared migration key, derived from the operator's key material.
/// Its `Debug` never shows it; equality is constant-time.
#[derive(Clone, Copy)]
pub struct MigrationKey([u8; KEY_LEN]);

impl MigrationKey {
    /// From raw key material of [`MIN_KEY_BYTES`]..=[`MAX_KEY_BYTES`] bytes.
    pub fn from_bytes(material: &[u8]) -> Result<Self, KeyError> {
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&material.len()) {
            return Err(KeyError::Length(material.len() * 2));
        }
        Ok(Self(blake3::derive_key(CTX_KEY, material)))
    }

    /// A fresh key from `entropy` (for a migration whose two ends are one
    /// monitor, which needs no shared secret).
    pub fn random(entropy: &mut impl Entropy) -> Self {
        let mut material = [0u8; KEY_LEN];
        entropy.fill(&mut material);
        Self(blake3::derive_key(CTX_KEY, &material))
    }

    /// From hex digits (`migrate_key=`), either case.
    pub fn from_hex(hex: &str) -> Result<Self, KeyError> {
        let digits = hex.as_bytes();
        if !digits.len().is_multiple_of(2)
            || !(MIN_KEY_BYTES * 2..=MAX_KEY_BYTES * 2).contains(&digits.len())
        {
            return Err(KeyError::Length(digits.len()));
        }
        let nibble = |at: usize| match digits[at] {
            b @ b'0'..=b'9' => Ok(b - b'0'),
            b @ b'a'..=b'f' => Ok(b - b'a' + 10),
            b @ b'A'..=b'F' => Ok(b - b'A' + 10),
            _ => Err(KeyError::NotHex(at)),
        };
        let mut bytes = [0u8; MAX_KEY_BYTES];
        for (i, b) in bytes[..digits.len() / 2].iter_mut().enumerate() {
            *b = (nibble(2 * i)? << 4) | nibble(2 * i + 1)?;
        }
        Self::from_bytes(&bytes[..digits.len() / 2])
    }

    /// A short public name of the key, for logs: two sides with the same
    /// fingerprint hold the same key (it reveals nothing useful about it).
    pub fn fingerprint(&self) -> u32 {
        le32(&blake3::derive_key(CTX_FINGERPRINT, &self.0))
    }
}

impl PartialEq for MigrationKey {
    fn eq(&self, other: &Self) -> bool {
        blake3::Hash::from_bytes(self.0) == blake3::Hash::from_bytes(other.0)
    }
}
impl Eq for MigrationKey {}

impl fmt::Debug for MigrationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MigrationKey(fingerprint {:08x})", self.fingerprint())
    }
}

/// Where a side's nonces come from. The monitor's implementation draws on
/// RDSEED / RDRAND where the CPU has them, else on TSC jitter, conditioned
/// through an [`EntropyPool`]; tests use [`DeterministicEntropy`].
pub trait Entropy {
    /// Fill `out` with unpredictable bytes.
    fn fill(&mut self, out: &mut [u8]);
}

impl<E: Entropy + ?Sized> Entropy for &mut E {
    fn fill(&mut self, out: &mut [u8]) {
        (**self).fill(out)
    }
}

/// Conditions raw entropy samples (hardware random words, timer jitter)
/// into uniform bytes: BLAKE3 over everything added.
#[derive(Clone, Debug)]
pub struct EntropyPool(blake3::Hasher);

impl Default for EntropyPool {
    fn default() -> Self {
        Self::new()
    }
}

impl EntropyPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self(blake3::Hasher::new_derive_key(
            "gmig-rs 2026-12 entropy pool",
        ))
    }
    /// Mix in a sample.
    pub fn add(&mut self, sample: &[u8]) {
        self.0.update(sample);
    }
    /// Fill `out` from everything mixed in so far.
    pub fn extract(&self, out: &mut [u8]) {
        self.0.finalize_xof().fill(out);
    }
}

/// NOT random: a counter run through BLAKE3, for tests, the simulator and
/// fuzzing, where runs must repeat. Never use it for a real migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeterministicEntropy(pub u64);

impl Entropy for DeterministicEntropy {
    fn fill(&mut self, out: &mut [u8]) {
        let mut h = blake3::Hasher::new_derive_key("gmig-rs deterministic test entropy");
        h.update(&self.0.to_le_bytes());
        h.finalize_xof().fill(out);
        self.0 = self.0.wrapping_add(1);
    }
}

/// A fresh nonce from `entropy`.
pub fn fresh_nonce(entropy: &mut impl Entropy) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    entropy.fill(&mut n);
    n
}

fn nonce(seq: u32) -> GenericArray<u8, chacha20poly1305::consts::U12> {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&seq.to_le_bytes());
    n.into()
}

/// Why a record could not be sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// The direction used every sequence number (4 Gi records): sealing
    /// more would reuse a nonce.
    Exhausted,
}

/// Seals records of one direction: writes the sequence number, the tag and
/// the CRC ([`crate::wire`] layout).
#[derive(Clone)]
pub struct Sealer {
    aead: ChaCha20Poly1305,
    encrypt: bool,
    next: u32,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("encrypt", &self.encrypt)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    fn new(key: &[u8; KEY_LEN], encrypt: bool) -> Self {
        Self {
            aead: ChaCha20Poly1305::new(key.into()),
            encrypt,
            next: 0,
        }
    }

    /// Sequence number the next sealed record gets.
    pub fn next_seq(&self) -> u32 {
        self.next
    }

    /// Seal the record whose header and plaintext payload are
    /// `buf[..body_len]` (from [`crate::wire::RecordRepr::emit_body`]):
    /// returns the record's whole length. `buf` must hold the tag and CRC.
    pub fn seal(&mut self, buf: &mut [u8], body_len: usize) -> Result<usize, SealError> {
        if self.next == u32::MAX {
            return Err(SealError::Exhausted);
        }
        let seq = self.next;
        buf[4..8].copy_from_slice(&seq.to_le_bytes());
        let n = nonce(seq);
        let tag = if self.encrypt {
            let (head, payload) = buf.split_at_mut(RECORD_HEAD_LEN);
            self.aead.encrypt_in_place_detached(
                &n,
                head,
                &mut payload[..body_len - RECORD_HEAD_LEN],
            )
        } else {
            self.aead
                .encrypt_in_place_detached(&n, &buf[..body_len], &mut [])
        }
        // Fails only for messages above 256 GiB.
        .map_err(|_| SealError::Exhausted)?;
        buf[body_len..body_len + TAG_LEN].copy_from_slice(&tag);
        self.next += 1;
        Ok(put_crc(buf, body_len + TAG_LEN))
    }
}

/// Opens records of one direction: checks the CRC, the sequence number and
/// the tag (in that order, see [`crate::wire`]), and decrypts.
#[derive(Clone)]
pub struct Opener {
    aead: ChaCha20Poly1305,
    encrypt: bool,
    next: u32,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("encrypt", &self.encrypt)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Opener {
    fn new(key: &[u8; KEY_LEN], encrypt: bool) -> Self {
        Self {
            aead: ChaCha20Poly1305::new(key.into()),
            encrypt,
            next: 0,
        }
    }

    /// Sequence number the next record must have.
    pub fn next_seq(&self) -> u32 {
        self.next
    }

    /// Open the record framed at the start of `buf` in place; afterwards
    /// its payload is plaintext and [`crate::wire::RecordRepr::parse`] may
    /// read it.
    pub fn open(&mut self, buf: &mut [u8]) -> Result<(), WireError> {
        let view = Record::new_checked(&buf[..])?;
        let (seq, body) = (view.seq(), view.body_len());
        if !crc_ok(buf, body + TAG_LEN) {
            return Err(WireError::RecordCrc { seq });
        }
        if seq != self.next {
            return Err(WireError::Sequence {
                expected: self.next,
                got: seq,
            });
        }
        let n = nonce(self.next);
        let tag = *GenericArray::from_slice(&buf[body..body + TAG_LEN]);
        let opened = if self.encrypt {
            let (head, payload) = buf.split_at_mut(RECORD_HEAD_LEN);
            self.aead.decrypt_in_place_detached(
                &n,
                head,
                &mut payload[..body - RECORD_HEAD_LEN],
                &tag,
            )
        } else {
            self.aead
                .decrypt_in_place_detached(&n, &buf[..body], &mut [], &tag)
        };
        opened.map_err(|_| WireError::Authentication { seq })?;
        // A sealer never uses u32::MAX, so an honest stream never gets here.
        self.next = self.next.checked_add(1).ok_or(WireError::TrailingData)?;
        Ok(())
    }
}

/// One side's record protection once the handshake succeeded.
#[derive(Clone, Debug)]
pub struct Session {
    /// Seals what this side sends.
    pub tx: Sealer,
    /// Opens what this side receives.
    pub rx: Opener,
    /// Whether records are encrypted (else authenticated only).
    pub encrypt: bool,
}

fn transcript(hello: &[u8], challenge_signed: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(&hello[..HELLO_LEN]);
    h.update(&challenge_signed[..CHALLENGE_SIGNED_LEN]);
    h.finalize()
}

fn proof(key: &[u8; KEY_LEN], label: &[u8; 16], t: &blake3::Hash) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(label);
    h.update(t.as_bytes());
    h.finalize()
}

/// (source to destination, destination to source) session keys.
fn session_keys(key: &[u8; KEY_LEN], t: &blake3::Hash) -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
    let mut material = [0u8; 2 * KEY_LEN];
    material[..KEY_LEN].copy_from_slice(key);
    material[KEY_LEN..].copy_from_slice(t.as_bytes());
    (
        blake3::derive_key(CTX_SOURCE_TO_DEST, &material),
        blake3::derive_key(CTX_DEST_TO_SOURCE, &material),
    )
}

/// Why the source's side of the handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitiatorError {
    /// The challenge is damaged or malformed.
    Wire(WireError),
    /// The destination refused the hello.
    Refused(Refusal),
    /// The destination's proof does not match: it does not know the key.
    /// `proof` is this side's, to send anyway (see the module docs).
    KeyMismatch {
        /// The source's proof message.
        proof: [u8; PROOF_LEN],
    },
}

/// The source's side of the handshake.
#[derive(Clone, Debug)]
pub struct Initiator {
    key: [u8; KEY_LEN],
    hello: [u8; HELLO_LEN],
    encrypt: bool,
}

/// A handshake the source completed.
#[derive(Clone, Debug)]
pub struct Established {
    /// The proof message to send.
    pub proof: [u8; PROOF_LEN],
    /// Record protection.
    pub session: Session,
}

impl Initiator {
    /// Start a handshake with `hello` (which carries the source's nonce).
    pub fn new(key: &MigrationKey, hello: &HelloRepr) -> Self {
        let mut bytes = [0u8; HELLO_LEN];
        hello.emit(&mut bytes);
        Self {
            key: key.0,
            hello: bytes,
            encrypt: hello.encrypt,
        }
    }

    /// The hello message to send.
    pub fn hello(&self) -> &[u8; HELLO_LEN] {
        &self.hello
    }

    /// Check the destination's challenge (`CHALLENGE_LEN` bytes).
    pub fn finish(&self, challenge: &[u8]) -> Result<Established, InitiatorError> {
        let c = ChallengeRepr::parse(challenge).map_err(InitiatorError::Wire)?;
        if let Some(r) = c.refusal {
            return Err(InitiatorError::Refused(r));
        }
        if self.encrypt && !c.encrypt {
            return Err(InitiatorError::Wire(WireError::Downgrade));
        }
        let t = transcript(&self.hello, challenge);
        let mut proof_msg = [0u8; PROOF_LEN];
        proof_msg[..PROOF_MAC_LEN]
            .copy_from_slice(proof(&self.key, LABEL_SOURCE_PROOF, &t).as_bytes());
        put_crc(&mut proof_msg, PROOF_MAC_LEN);
        if proof(&self.key, LABEL_DEST_PROOF, &t) != blake3::Hash::from_bytes(c.proof) {
            return Err(InitiatorError::KeyMismatch { proof: proof_msg });
        }
        let (s2d, d2s) = session_keys(&self.key, &t);
        Ok(Established {
            proof: proof_msg,
            session: Session {
                tx: Sealer::new(&s2d, c.encrypt),
                rx: Opener::new(&d2s, c.encrypt),
                encrypt: c.encrypt,
            },
        })
    }
}

/// What the destination was set up for: a hello must match it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// vGPU type index.
    pub vgpu_type: u16,
    /// Pages of the guest it can take.
    pub page_count: u64,
    /// Whether it wants encrypted records (the session encrypts if either
    /// side asks).
    pub encrypt: bool,
}

/// The destination's side of the handshake.
#[derive(Clone, Debug)]
pub struct Responder {
    key: [u8; KEY_LEN],
    nonce: [u8; NONCE_LEN],
    expect: Expectation,
}

/// The destination's answer to a hello.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The challenge to send (a refusal when `outcome` is an error).
    pub challenge: [u8; CHALLENGE_LEN],
    /// The proof to wait for, or what is wrong with the hello.
    pub outcome: Result<AwaitProof, WireError>,
}

/// A destination waiting for the source's proof.
#[derive(Clone, Debug)]
pub struct AwaitProof {
    expected: blake3::Hash,
    session: Session,
}

/// Why the destination's check of the source's proof failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofError {
    /// The proof message is damaged.
    Wire(WireError),
    /// The source's proof does not match: it does not know the key.
    KeyMismatch,
}

impl AwaitProof {
    /// Check the source's proof message (`PROOF_LEN` bytes).
    pub fn check(self, msg: &[u8]) -> Result<Session, ProofError> {
        let got = crate::wire::parse_proof(msg).map_err(ProofError::Wire)?;
        if blake3::Hash::from_bytes(got) != self.expected {
            return Err(ProofError::KeyMismatch);
        }
        Ok(self.session)
    }
}

impl Responder {
    /// A destination with `key` and its fresh `nonce`.
    pub fn new(key: &MigrationKey, nonce: [u8; NONCE_LEN], expect: Expectation) -> Self {
        Self {
            key: key.0,
            nonce,
            expect,
        }
    }

    /// Answer a hello (`HELLO_LEN` bytes).
    pub fn answer(&self, hello: &[u8]) -> Answer {
        let refuse = |e: WireError| {
            let mut challenge = [0u8; CHALLENGE_LEN];
            ChallengeRepr::refused(Refusal::for_hello_error(e)).emit(&mut challenge);
            Answer {
                challenge,
                outcome: Err(e),
            }
        };
        let h = match HelloRepr::parse(hello) {
            Ok(h) => h,
            Err(e) => return refuse(e),
        };
        if h.vgpu_type != self.expect.vgpu_type {
            return refuse(WireError::VgpuType {
                expected: self.expect.vgpu_type,
                got: h.vgpu_type,
            });
        }
        if h.page_count != self.expect.page_count {
            return refuse(WireError::GuestSize {
                expected: self.expect.page_count,
                got: h.page_count,
            });
        }
        let encrypt = h.encrypt || self.expect.encrypt;
        let mut c = ChallengeRepr {
            refusal: None,
            encrypt,
            nonce: self.nonce,
            proof: [0; PROOF_MAC_LEN],
        };
        let mut signed = [0u8; CHALLENGE_SIGNED_LEN];
        c.emit_signed(&mut signed);
        let t = transcript(hello, &signed);
        c.proof = *proof(&self.key, LABEL_DEST_PROOF, &t).as_bytes();
        let mut challenge = [0u8; CHALLENGE_LEN];
        c.emit(&mut challenge);
        let (s2d, d2s) = session_keys(&self.key, &t);
        Answer {
            challenge,
            outcome: Ok(AwaitProof {
                expected: proof(&self.key, LABEL_SOURCE_PROOF, &t),
                session: Session {
                    tx: Sealer::new(&d2s, encrypt),
                    rx: Opener::new(&s2d, encrypt),
                    encrypt,
                },
            }),
        }
    }
}

/// Both ends' record protection after a handshake run in memory with
/// `key` (fixed nonces), in `encrypt` mode: for measuring what sealing and
/// opening cost (the simulator's bench, the monitor's self-test), never for
/// a migration.
pub fn loopback_sessions(key: &MigrationKey, encrypt: bool) -> Option<(Session, Session)> {
    let hello = crate::wire::HelloRepr {
        vgpu_type: 0,
        encrypt,
        page_count: 1,
        nonce: [1; NONCE_LEN],
    };
    let init = Initiator::new(key, &hello);
    let expect = Expectation {
        vgpu_type: 0,
        page_count: 1,
        encrypt,
    };
    let answer = Responder::new(key, [2; NONCE_LEN], expect).answer(init.hello());
    let est = init.finish(&answer.challenge).ok()?;
    let dest = answer.outcome.ok()?.check(&est.proof).ok()?;
    Some((est.session, dest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{RecordRepr, MAX_RECORD, RECORD_TRAILER_LEN};

    fn key(b: u8) -> MigrationKey {
        MigrationKey::from_bytes(&[b; 32]).unwrap()
    }

    fn expect() -> Expectation {
        Expectation {
            vgpu_type: 1,
            page_count: 8,
            encrypt: false,
        }
    }

    fn hello(encrypt: bool, nonce: u8) -> HelloRepr {
        HelloRepr {
            vgpu_type: 1,
            encrypt,
            page_count: 8,
            nonce: [nonce; NONCE_LEN],
        }
    }

    /// Both sides' sessions after a handshake with `source_key` and
    /// `dest_key`.
    fn handshake(
        source_key: &MigrationKey,
        dest_key: &MigrationKey,
        encrypt: bool,
    ) -> Result<(Session, Session), (Option<InitiatorError>, Option<ProofError>)> {
        let init = Initiator::new(source_key, &hello(encrypt, 1));
        let resp = Responder::new(dest_key, [2; NONCE_LEN], expect());
        let answer = resp.answer(init.hello());
        let pending = answer.outcome.unwrap();
        let (proof, source) = match init.finish(&answer.challenge) {
            Ok(e) => (e.proof, Ok(e.session)),
            Err(InitiatorError::KeyMismatch { proof }) => (
                proof,
                Err(InitiatorError::KeyMismatch {
                    proof: [0; PROOF_LEN],
                }),
            ),
            Err(e) => return Err((Some(e), None)),
        };
        let dest = pending.check(&proof);
        match (source, dest) {
            (Ok(s), Ok(d)) => Ok((s, d)),
            (s, d) => Err((s.err(), d.err())),
        }
    }

    #[test]
    fn key_parsing() {
        let hex = "00112233445566778899aabbccddeeff";
        let k = MigrationKey::from_hex(hex).unwrap();
        assert_eq!(k, MigrationKey::from_hex(&hex.to_uppercase()).unwrap());
        assert_ne!(k, MigrationKey::from_hex(&hex.replace('0', "1")).unwrap());
        assert_eq!(
            MigrationKey::from_hex(&hex[..30]),
            Err(KeyError::Length(30))
        );
        assert_eq!(
            MigrationKey::from_hex("0011223344556677889900aabbccddeeg"),
            Err(KeyError::Length(33))
        );
        assert_eq!(
            MigrationKey::from_hex("0011223344556677889900aabbccddeg"),
            Err(KeyError::NotHex(31))
        );
        // Debug shows the fingerprint, never the key.
        let shown = format!("{k:?}");
        assert!(
            shown.contains(&format!("{:08x}", k.fingerprint())),
            "{shown}"
        );
        assert!(!shown.contains("00112233"));
    }

    #[test]
    fn same_key_agrees_on_keys_for_both_directions() {
        for encrypt in [false, true] {
            let (mut s, mut d) = handshake(&key(1), &key(1), encrypt).unwrap();
            assert_eq!(s.encrypt, encrypt);
            let page = [0x5a; 4096];
            let mut buf = [0u8; MAX_RECORD];
            let repr = RecordRepr::Page {
                page: crate::GuestPage::new(3).unwrap(),
                data: &page,
            };
            let body = repr.emit_body(&mut buf);
            let n = s.tx.seal(&mut buf, body).unwrap();
            assert_eq!(n, body + RECORD_TRAILER_LEN);
            // Encrypted records do not carry the page in the clear.
            assert_eq!(
                buf[RECORD_HEAD_LEN..body] == page[..],
                !encrypt,
                "encrypt {encrypt}"
            );
            // The back channel has its own key: a forward record with the
            // right sequence number does not open there.
            let mut copy = buf;
            assert_eq!(
                s.rx.open(&mut copy[..n]),
                Err(WireError::Authentication { seq: 0 })
            );
            d.rx.open(&mut buf[..n]).unwrap();
            let view = Record::new_checked(&buf[..n]).unwrap();
            assert_eq!(RecordRepr::parse(&view).unwrap(), repr);
            let body = RecordRepr::Ready { done_seq: 0 }.emit_body(&mut buf);
            let n = d.tx.seal(&mut buf, body).unwrap();
            s.rx.open(&mut buf[..n]).unwrap();
        }
    }

    #[test]
    fn wrong_key_fails_on_both_sides_and_is_not_corruption() {
        let (s, d) = handshake(&key(1), &key(2), false).unwrap_err();
        assert!(matches!(s, Some(InitiatorError::KeyMismatch { .. })));
        assert_eq!(d, Some(ProofError::KeyMismatch));
        // Damage is a CRC error, not a key mismatch.
        let init = Initiator::new(&key(1), &hello(false, 1));
        let resp = Responder::new(&key(1), [2; NONCE_LEN], expect());
        let mut answer = resp.answer(init.hello());
        answer.challenge[50] ^= 4;
        assert_eq!(
            init.finish(&answer.challenge).unwrap_err(),
            InitiatorError::Wire(WireError::HandshakeCrc)
        );
    }

    #[test]
    fn encryption_if_either_side_asks_and_no_downgrade() {
        let init = Initiator::new(&key(1), &hello(false, 1));
        let mut e = expect();
        e.encrypt = true;
        let resp = Responder::new(&key(1), [2; NONCE_LEN], e);
        let est = init.finish(&resp.answer(init.hello()).challenge).unwrap();
        assert!(est.session.encrypt);
        // A challenge that drops the encryption the source asked for.
        let init = Initiator::new(&key(1), &hello(true, 1));
        let mut c = [0u8; CHALLENGE_LEN];
        ChallengeRepr {
            refusal: None,
            encrypt: false,
            nonce: [0; NONCE_LEN],
            proof: [0; PROOF_MAC_LEN],
        }
        .emit(&mut c);
        assert_eq!(
            init.finish(&c).unwrap_err(),
            InitiatorError::Wire(WireError::Downgrade)
        );
    }

    #[test]
    fn replayed_proof_fails_against_a_fresh_nonce() {
        let init = Initiator::new(&key(1), &hello(false, 1));
        let first = Responder::new(&key(1), [2; NONCE_LEN], expect());
        let est = init.finish(&first.answer(init.hello()).challenge).unwrap();
        // The same hello and proof, replayed to a destination with another nonce.
        let second = Responder::new(&key(1), [3; NONCE_LEN], expect());
        let pending = second.answer(init.hello()).outcome.unwrap();
        assert_eq!(
            pending.check(&est.proof).unwrap_err(),
            ProofError::KeyMismatch
        );
    }

    #[test]
    fn hello_mismatches_are_refused_with_a_reason() {
        let resp = Responder::new(&key(1), [2; NONCE_LEN], expect());
        let mut h = hello(false, 1);
        h.page_count = 9;
        let init = Initiator::new(&key(1), &h);
        let a = resp.answer(init.hello());
        assert_eq!(
            a.outcome.unwrap_err(),
            WireError::GuestSize {
                expected: 8,
                got: 9
            }
        );
        assert_eq!(
            init.finish(&a.challenge).unwrap_err(),
            InitiatorError::Refused(Refusal::GuestSize)
        );
    }

    #[test]
    fn sealer_never_wraps() {
        let (mut s, _) = handshake(&key(1), &key(1), false).unwrap();
        s.tx.next = u32::MAX;
        let mut buf = [0u8; MAX_RECORD];
        let body = RecordRepr::Done { page_records: 0 }.emit_body(&mut buf);
        assert_eq!(s.tx.seal(&mut buf, body), Err(SealError::Exhausted));
    }

    #[test]
    fn deterministic_entropy_differs_per_draw() {
        let mut e = DeterministicEntropy(5);
        let (a, b) = (fresh_nonce(&mut e), fresh_nonce(&mut e));
        assert_ne!(a, b);
        assert_eq!(a, fresh_nonce(&mut DeterministicEntropy(5)));
        let mut pool = EntropyPool::new();
        let mut x = [0u8; 32];
        pool.extract(&mut x);
        pool.add(&[1]);
        let mut y = [0u8; 32];
        pool.extract(&mut y);
        assert_ne!(x, y);
    }
}
