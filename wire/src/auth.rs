//! Authentication math, as pure functions: `mysql_native_password`,
//! `caching_sha2_password` (fast path, cleartext full auth over TLS, RSA
//! public-key exchange), nonce generation.
//!
//! ```text
//! native      : SHA1(pw) XOR SHA1(nonce || SHA1(SHA1(pw)))            stored: SHA1(SHA1(pw))
//! caching_sha2: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) || nonce)    cached: SHA256(SHA256(pw))
//! rsa         : RSA-OAEP(SHA-1)( (pw || NUL) XOR nonce repeated )
//! ```
//! An empty password is sent as an empty auth response by both plugins.

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::rand_core::{OsRng, RngCore};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha1::{Digest, Sha1};
use sha2::Sha256;

use crate::error::Result;

/// `mysql_native_password`.
pub const MYSQL_NATIVE_PASSWORD: &str = "mysql_native_password";
/// `caching_sha2_password`, the MySQL 8+ default.
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";
/// `sha256_password` (deprecated).
pub const SHA256_PASSWORD: &str = "sha256_password";
/// `mysql_clear_password`.
pub const MYSQL_CLEAR_PASSWORD: &str = "mysql_clear_password";
/// Length of the nonce MySQL sends.
pub const NONCE_LEN: usize = 20;

fn xor_into<const N: usize>(a: &mut [u8; N], b: &[u8; N]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x ^= y);
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh 20-byte nonce, as MySQL builds it: random 7-bit bytes, never NUL
/// or `$` (so it survives NUL-terminated handling in older clients).
pub fn generate_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    for b in &mut nonce {
        *b &= 0x7f;
        if *b == 0 || *b == b'$' {
            *b += 1;
        }
    }
    nonce
}

/// `SHA1(SHA1(password))`: what `mysql.user` stores for native auth.
pub fn native_password_hash(password: &[u8]) -> [u8; 20] {
    Sha1::digest(Sha1::digest(password)).into()
}

/// The client's `mysql_native_password` response for `nonce` (empty for an
/// empty password).
pub fn native_password_scramble(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let mut stage1: [u8; 20] = Sha1::digest(password).into();
    let stage2: [u8; 20] = Sha1::digest(stage1).into();
    let mix: [u8; 20] = Sha1::new()
        .chain_update(nonce)
        .chain_update(stage2)
        .finalize()
        .into();
    xor_into(&mut stage1, &mix);
    stage1.to_vec()
}

/// Server-side check of a `mysql_native_password` response against the
/// stored `SHA1(SHA1(password))`.
pub fn native_password_verify(response: &[u8], nonce: &[u8], stored: &[u8; 20]) -> bool {
    let Ok(response) = <[u8; 20]>::try_from(response) else {
        return false;
    };
    let mix: [u8; 20] = Sha1::new()
        .chain_update(nonce)
        .chain_update(stored)
        .finalize()
        .into();
    let mut stage1 = response;
    xor_into(&mut stage1, &mix);
    constant_time_eq(&Sha1::digest(stage1), stored)
}

/// `SHA256(SHA256(password))`: what the server keeps in its caching_sha2
/// cache after a successful full authentication.
pub fn caching_sha2_digest(password: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(password)).into()
}

/// The client's `caching_sha2_password` fast-auth response (empty for an
/// empty password).
pub fn caching_sha2_scramble(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let mut stage1: [u8; 32] = Sha256::digest(password).into();
    let stage2: [u8; 32] = Sha256::digest(stage1).into();
    let mix: [u8; 32] = Sha256::new()
        .chain_update(stage2)
        .chain_update(nonce)
        .finalize()
        .into();
    xor_into(&mut stage1, &mix);
    stage1.to_vec()
}

/// Server-side fast-auth check of a `caching_sha2_password` response against
/// the cached `SHA256(SHA256(password))`.
pub fn caching_sha2_verify(response: &[u8], nonce: &[u8], cached: &[u8; 32]) -> bool {
    let Ok(response) = <[u8; 32]>::try_from(response) else {
        return false;
    };
    let mix: [u8; 32] = Sha256::new()
        .chain_update(cached)
        .chain_update(nonce)
        .finalize()
        .into();
    let mut stage1 = response;
    xor_into(&mut stage1, &mix);
    constant_time_eq(&Sha256::digest(stage1), cached)
}

/// The password as sent in cleartext full authentication over TLS (or
/// `mysql_clear_password`): the password and a NUL.
pub fn cleartext_password(password: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(password.len() + 1);
    out.extend_from_slice(password);
    out.push(0);
    out
}

/// Reads a cleartext password packet: strips the trailing NUL, if any.
pub fn parse_cleartext_password(data: &[u8]) -> &[u8] {
    match data {
        [head @ .., 0] => head,
        all => all,
    }
}

/// `(password || NUL) XOR nonce`, the nonce repeated as needed. An empty
/// nonce leaves the bytes unchanged.
pub fn xor_with_nonce(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    let mut out = cleartext_password(password);
    if !nonce.is_empty() {
        for (b, n) in out.iter_mut().zip(nonce.iter().cycle()) {
            *b ^= n;
        }
    }
    out
}

fn oaep() -> Oaep {
    Oaep::new::<Sha1>()
}

/// Parses an RSA public key in PEM, as a server sends it: SubjectPublicKeyInfo
/// (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`).
pub fn parse_public_key_pem(pem: &[u8]) -> Result<RsaPublicKey> {
    let text = String::from_utf8_lossy(pem);
    let text = text.trim_end_matches('\0').trim();
    match RsaPublicKey::from_public_key_pem(text) {
        Ok(key) => Ok(key),
        Err(spki) => RsaPublicKey::from_pkcs1_pem(text).map_err(|_| spki.into()),
    }
}

/// Client side of the RSA exchange: encrypts the password for the server
/// whose PEM public key is `pem`, with RSA-OAEP (SHA-1), as
/// `RSA_PKCS1_OAEP_PADDING` does.
pub fn rsa_encrypt_password(password: &[u8], nonce: &[u8], pem: &[u8]) -> Result<Vec<u8>> {
    let key = parse_public_key_pem(pem)?;
    rsa_encrypt_password_with(password, nonce, &key)
}

/// Like [`rsa_encrypt_password`] with an already parsed key.
pub fn rsa_encrypt_password_with(
    password: &[u8],
    nonce: &[u8],
    key: &RsaPublicKey,
) -> Result<Vec<u8>> {
    let plain = xor_with_nonce(password, nonce);
    Ok(key.encrypt(&mut OsRng, oaep(), &plain)?)
}

/// The proxy's RSA key pair for the caching_sha2 public-key exchange: it hands
/// out [`RsaKeyPair::public_key_pem`] on request (`0x02`) and decrypts the
/// password the client sends back.
#[derive(Clone)]
pub struct RsaKeyPair {
    private: RsaPrivateKey,
    public_pem: String,
}

impl std::fmt::Debug for RsaKeyPair {
    /// Shows only the public half: private key material never reaches logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKeyPair")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

impl RsaKeyPair {
    /// Generates a key pair of `bits` bits (MySQL uses 2048). Slow: seconds
    /// in debug builds; do it once at startup.
    pub fn generate(bits: usize) -> Result<Self> {
        Self::from_private(RsaPrivateKey::new(&mut OsRng, bits)?)
    }

    /// Loads a PKCS#8 PEM private key (`BEGIN PRIVATE KEY`), e.g. MySQL's
    /// `private_key.pem`.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        Self::from_private(RsaPrivateKey::from_pkcs8_pem(pem)?)
    }

    /// Loads a PEM private key in PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`). MySQL's own `private_key.pem` ends with a
    /// NUL byte: trailing NULs and whitespace are ignored.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let pem = pem.trim_end_matches('\0').trim();
        match RsaPrivateKey::from_pkcs8_pem(pem) {
            Ok(key) => Self::from_private(key),
            Err(pkcs8) => match rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(pem) {
                Ok(key) => Self::from_private(key),
                Err(_) => Err(pkcs8.into()),
            },
        }
    }

    fn from_private(private: RsaPrivateKey) -> Result<Self> {
        let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF)?;
        Ok(Self {
            private,
            public_pem,
        })
    }

    /// The public key as `BEGIN PUBLIC KEY` PEM, the format MySQL sends.
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// The public key.
    pub fn public_key(&self) -> RsaPublicKey {
        self.private.to_public_key()
    }

    /// Decrypts a client's RSA-encrypted password for `nonce`; returns the
    /// password without its NUL terminator.
    pub fn decrypt_password(&self, ciphertext: &[u8], nonce: &[u8]) -> Result<Vec<u8>> {
        let plain = self.private.decrypt(oaep(), ciphertext)?;
        let mut password = plain;
        if !nonce.is_empty() {
            for (b, n) in password.iter_mut().zip(nonce.iter().cycle()) {
                *b ^= n;
            }
        }
        if password.last() == Some(&0) {
            password.pop();
        }
        Ok(password)
    }
}

#[cfg(test)]
mod tests;
