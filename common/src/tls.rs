//! TLS server set-up from PEM files (rustls with the ring provider). Every
//! error names the file it is about.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::ServerConfig;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// TLS material that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read or is not valid PEM.
    #[error("{}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        source: pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no certificate found", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("{}: no private key found", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificate chain and key (e.g. they do not match).
    #[error("{} with {}: {source}", cert.display(), key.display())]
    KeyPair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("tls server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The crypto provider every Causeway TLS configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file (a chain, or a CA bundle); at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |source| TlsError::Pem {
        path: path.to_path_buf(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        source => TlsError::Pem {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// A server configuration (safe default protocol versions, no client
/// certificates) presenting `certs` with `key`.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, TlsError> {
    Ok(ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
}

/// A TLS acceptor from PEM files: a certificate chain and its private key.
pub fn acceptor_from_pem(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let config = server_config(certs, key).map_err(|e| match e {
        TlsError::Config(source) => TlsError::KeyPair {
            cert: cert_file.to_path_buf(),
            key: key_file.to_path_buf(),
            source,
        },
        other => other,
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir =
                std::env::temp_dir().join(format!("cw-common-tls-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Dir(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn self_signed() -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap()
    }

    #[test]
    fn a_pem_pair_makes_an_acceptor() {
        let dir = Dir::new("pair");
        let ck = self_signed();
        let cert = dir.write("cert.pem", &ck.cert.pem());
        let key = dir.write("key.pem", &ck.signing_key.serialize_pem());
        acceptor_from_pem(&cert, &key).unwrap();
        assert_eq!(load_certs(&cert).unwrap(), vec![ck.cert.der().clone()]);
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = load_certs(Path::new("/nonexistent/cert.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/nonexistent/cert.pem: "), "{err}");
        let err = load_key(Path::new("/nonexistent/key.pem"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/nonexistent/key.pem: "), "{err}");
    }

    #[test]
    fn files_without_the_item_are_named() {
        let dir = Dir::new("empty");
        let ck = self_signed();
        let key = dir.write("key.pem", &ck.signing_key.serialize_pem());
        let cert = dir.write("cert.pem", &ck.cert.pem());
        let err = load_certs(&key).unwrap_err().to_string();
        assert_eq!(err, format!("{}: no certificate found", key.display()));
        let err = load_key(&cert).unwrap_err().to_string();
        assert_eq!(err, format!("{}: no private key found", cert.display()));
    }

    #[test]
    fn a_key_of_another_certificate_names_both_files() {
        let dir = Dir::new("mismatch");
        let cert = dir.write("cert.pem", &self_signed().cert.pem());
        let key = dir.write("key.pem", &self_signed().signing_key.serialize_pem());
        let Err(err) = acceptor_from_pem(&cert, &key) else {
            panic!("a key of another certificate was accepted");
        };
        assert!(matches!(err, TlsError::KeyPair { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("cert.pem with "), "{msg}");
        assert!(msg.contains("key.pem: "), "{msg}");
    }
}
