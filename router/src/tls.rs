//! TLS on both legs (rustls with the ring provider).
//!
//! - Clients: the configured certificate, or a self-signed one generated at
//!   startup (with a warning: clients that verify will refuse it).
//! - Backend: `required` (encrypt, verify nothing, like `--ssl-mode=REQUIRED`),
//!   `verify_ca` (chain against the CA file, any name) or `verify_identity`
//!   (chain and name).

use std::sync::Arc;

use anyhow::Context;
use causeway_common::tls::{acceptor_from_pem, load_certs, provider, server_config};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::warn;

use crate::config::{BackendTls, BackendTlsMode, FrontendTls};

/// The acceptor for clients, or `None` when TLS is off.
pub fn frontend_acceptor(cfg: &FrontendTls) -> anyhow::Result<Option<TlsAcceptor>> {
    if !cfg.enabled {
        return Ok(None);
    }
    if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
        return Ok(Some(acceptor_from_pem(cert, key)?));
    }
    warn!("frontend.tls has no cert_file: using a self-signed certificate generated now; clients that verify the server will refuse it");
    let (certs, key) = self_signed()?;
    let config = server_config(certs, key).context("self-signed tls certificate")?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

fn self_signed() -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .context("generating a self-signed certificate")?;
    let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der())
        .map_err(|e| anyhow::anyhow!("self-signed key: {e}"))?;
    Ok((vec![ck.cert.der().clone()], key))
}

/// The connector and server name for the backend, or `None` when TLS is off.
/// `host` is the name checked against the certificate unless
/// `tls.server_name` is set.
pub fn backend_connector(
    tls: &BackendTls,
    host: &str,
) -> anyhow::Result<Option<(TlsConnector, ServerName<'static>)>> {
    let name = tls.server_name.clone().unwrap_or_else(|| host.to_string());
    let name = ServerName::try_from(name.clone())
        .with_context(|| format!("backend tls server name {name:?}"))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("tls protocol versions")?;
    let config = match tls.mode {
        BackendTlsMode::Disabled => return Ok(None),
        BackendTlsMode::Required => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth(),
        BackendTlsMode::VerifyCa | BackendTlsMode::VerifyIdentity => {
            let mut roots = RootCertStore::empty();
            let ca = tls
                .ca_file
                .as_deref()
                .context("backend.tls.ca_file is required to verify the backend")?;
            for cert in load_certs(ca)? {
                roots.add(cert).context("adding a CA certificate")?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .context("backend certificate verifier")?;
            let verifier: Arc<dyn ServerCertVerifier> = if tls.mode == BackendTlsMode::VerifyCa {
                Arc::new(AnyName(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(Some((TlsConnector::from(Arc::new(config)), name)))
}

/// `required`: the certificate is not checked (signatures still are, so the
/// session keys belong to whoever holds the presented key).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify_ca`: the chain must lead to the CA; the name is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
