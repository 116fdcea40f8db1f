use super::*;
use proptest::prelude::*;

const PRIVATE_PEM: &str = include_str!("../../testdata/rsa/private_key.pem");
const PUBLIC_PEM: &str = include_str!("../../testdata/rsa/public_key.pem");
const PUBLIC_PKCS1_PEM: &str = include_str!("../../testdata/rsa/public_key_pkcs1.pem");
const OPENSSL_CT_HEX: &str = include_str!("../../testdata/rsa/openssl_oaep_sha1_secret.hex");

fn nonce() -> [u8; 20] {
    std::array::from_fn(|i| i as u8 + 1)
}

fn hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn native_hash_matches_mysql_password_function() {
    // SELECT PASSWORD('secret') on MySQL 5.7 = *14E65567ABDB5135D0CFD9A70B3032C179A49EE7
    assert_eq!(
        native_password_hash(b"secret").to_vec(),
        hex("14E65567ABDB5135D0CFD9A70B3032C179A49EE7")
    );
}

#[test]
fn native_scramble_matches_reference_and_verifies() {
    // Reference computed independently (Python hashlib).
    let got = native_password_scramble(b"secret", &nonce());
    assert_eq!(got, hex("b32bb3a583e1340c0a1108d58b1be49781ad8c2f"));
    let stored = native_password_hash(b"secret");
    assert!(native_password_verify(&got, &nonce(), &stored));
    assert!(!native_password_verify(&got, &[0u8; 20], &stored));
    assert!(!native_password_verify(
        &native_password_scramble(b"Secret", &nonce()),
        &nonce(),
        &stored
    ));
    assert!(!native_password_verify(&got[..19], &nonce(), &stored));
    assert!(native_password_scramble(b"", &nonce()).is_empty());
}

#[test]
fn caching_sha2_scramble_matches_reference_and_verifies() {
    let got = caching_sha2_scramble(b"secret", &nonce());
    assert_eq!(
        got,
        hex("746ebe205d56a0707acb3e796e834e0dd7b1d61743b26bd5202c7a623230c7c9")
    );
    let cached = caching_sha2_digest(b"secret");
    assert!(caching_sha2_verify(&got, &nonce(), &cached));
    assert!(!caching_sha2_verify(&got, &[9u8; 20], &cached));
    assert!(!caching_sha2_verify(&got[1..], &nonce(), &cached));
    assert!(caching_sha2_scramble(b"", &nonce()).is_empty());
}

#[test]
fn cleartext_and_xor() {
    assert_eq!(cleartext_password(b"pw"), b"pw\0");
    assert_eq!(parse_cleartext_password(b"pw\0"), b"pw");
    assert_eq!(parse_cleartext_password(b"pw"), b"pw");
    // 22 bytes against a 20-byte nonce: the nonce wraps around.
    let pw = [0u8; 21];
    let x = xor_with_nonce(&pw, &nonce());
    assert_eq!(x.len(), 22);
    assert_eq!(x[20], 1);
    assert_eq!(x[21], 2);
}

#[test]
fn generated_nonces_are_mysql_safe() {
    for _ in 0..50 {
        let n = generate_nonce();
        assert!(n.iter().all(|&b| b != 0 && b != b'$' && b < 0x80));
    }
    assert_ne!(generate_nonce(), generate_nonce());
}

#[test]
fn decrypts_a_ciphertext_made_by_openssl() {
    let keys = RsaKeyPair::from_pkcs8_pem(PRIVATE_PEM).unwrap();
    let password = keys
        .decrypt_password(&hex(OPENSSL_CT_HEX), &nonce())
        .unwrap();
    assert_eq!(password, b"secret");
}

#[test]
fn rsa_round_trip_with_both_public_key_formats() {
    let keys = RsaKeyPair::from_pkcs8_pem(PRIVATE_PEM).unwrap();
    assert_eq!(keys.public_key_pem().trim(), PUBLIC_PEM.trim());
    for pem in [PUBLIC_PEM, PUBLIC_PKCS1_PEM] {
        // Servers send the PEM with a trailing NUL in AuthMoreData.
        let mut sent = pem.as_bytes().to_vec();
        sent.push(0);
        let ct = rsa_encrypt_password(b"p@ss w0rd, long enough to wrap the nonce", &nonce(), &sent)
            .unwrap();
        assert_eq!(ct.len(), 256);
        assert_eq!(
            keys.decrypt_password(&ct, &nonce()).unwrap(),
            b"p@ss w0rd, long enough to wrap the nonce"
        );
    }
}

#[test]
fn rsa_errors_are_typed() {
    assert!(parse_public_key_pem(b"not a key").is_err());
    let keys = RsaKeyPair::from_pkcs8_pem(PRIVATE_PEM).unwrap();
    assert!(matches!(
        keys.decrypt_password(&[0u8; 256], &nonce()),
        Err(crate::CodecError::Rsa(_))
    ));
    assert!(keys.decrypt_password(&[], &nonce()).is_err());
    assert!(RsaKeyPair::from_pkcs8_pem("garbage").is_err());
    let shown = format!("{keys:?}");
    assert!(shown.contains("BEGIN PUBLIC KEY") && !shown.contains("PRIVATE"));
}

#[test]
fn generates_a_working_key_pair() {
    // Small key to keep debug-build tests fast; production uses 2048.
    let keys = RsaKeyPair::generate(1024).unwrap();
    assert!(keys
        .public_key_pem()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let ct = rsa_encrypt_password(b"pw", &nonce(), keys.public_key_pem().as_bytes()).unwrap();
    assert_eq!(keys.decrypt_password(&ct, &nonce()).unwrap(), b"pw");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn scrambles_verify_for_any_password(pw in proptest::collection::vec(any::<u8>(), 1..64), n in any::<[u8; 20]>()) {
        prop_assert!(native_password_verify(&native_password_scramble(&pw, &n), &n, &native_password_hash(&pw)));
        prop_assert!(caching_sha2_verify(&caching_sha2_scramble(&pw, &n), &n, &caching_sha2_digest(&pw)));
    }
}

#[test]
fn key_pair_loads_pkcs1_and_pkcs8_pem() {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
    let pkcs1 = private.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let pkcs8 = private.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let a = RsaKeyPair::from_pem(&pkcs1).unwrap();
    let b = RsaKeyPair::from_pem(&pkcs8).unwrap();
    assert_eq!(a.public_key_pem(), b.public_key_pem());
    assert!(RsaKeyPair::from_pem("not a key").is_err());
    // MySQL's private_key.pem ends with a NUL.
    RsaKeyPair::from_pem(&format!("{}\0", pkcs8.as_str())).unwrap();
}
