//! TLS for measurements (sslcert, https): rustls on `ring`, with a verifier that records
//! the server's chain instead of judging it. A measurement reports what the server
//! sends; it does not trust it, so nothing is sent over these connections but the
//! request being measured. Handshake signatures are still checked.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Accepts any certificate chain (the measurement records it).
#[derive(Debug)]
pub struct RecordingVerifier(Arc<CryptoProvider>);

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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

/// A client config that records rather than rejects, offering `alpn` protocols.
pub fn measurement_config(alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordingVerifier(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A host that is neither a DNS name nor an IP address.
#[derive(Debug, thiserror::Error)]
#[error("bad server name {host:?}: {source}")]
pub struct BadServerName {
    pub host: String,
    #[source]
    pub source: rustls::pki_types::InvalidDnsNameError,
}

/// The server name to send: a DNS name (SNI) or an IP address (no SNI).
pub fn server_name(host: &str) -> Result<ServerName<'static>, BadServerName> {
    ServerName::try_from(host.to_owned()).map_err(|source| BadServerName {
        host: host.to_owned(),
        source,
    })
}

/// `1.2` / `1.3` as RIPE Atlas writes `ver`.
pub fn version_string(v: Option<rustls::ProtocolVersion>) -> String {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3".into(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2".into(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
