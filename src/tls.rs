//! Trust for every outgoing TLS connection (gateways over `https://`, brokers over `amqps://`,
//! PostgreSQL with `sslmode=require|verify-full`): the system's roots, plus the PEM bundle of
//! `tls.ca_file` for operators with a private CA, read and checked once at start.

use std::path::{Path, PathBuf};

/// The extra trust roots, as each client takes them.
#[derive(Debug, Clone, Default)]
pub struct TlsTrust {
    ca_file: Option<PathBuf>,
    ca_pem: Option<String>,
    certificates: Vec<reqwest::Certificate>,
}

impl TlsTrust {
    /// Reads `ca_file`; an empty path trusts the system's roots alone. The problem, if any, is
    /// said in words for the configuration error that names the key.
    pub fn load(ca_file: &Path) -> Result<TlsTrust, String> {
        if ca_file.as_os_str().is_empty() {
            return Ok(TlsTrust::default());
        }
        let pem = std::fs::read_to_string(ca_file).map_err(|e| format!("cannot read {}: {e}", ca_file.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| format!("{} is not a PEM bundle of certificates: {e}", ca_file.display()))?;
        if certificates.is_empty() {
            return Err(format!("{} holds no PEM certificate", ca_file.display()));
        }
        Ok(TlsTrust { ca_file: Some(ca_file.to_path_buf()), ca_pem: Some(pem), certificates })
    }

    /// An HTTP client builder that trusts the extra roots besides the system's.
    pub fn http_client(&self) -> reqwest::ClientBuilder {
        self.certificates
            .iter()
            .fold(reqwest::Client::builder(), |builder, certificate| builder.add_root_certificate(certificate.clone()))
    }

    /// A rustls client configuration (SMPP over TLS): the system's roots and the extra ones.
    pub fn rustls_client(&self) -> Result<rustls::ClientConfig, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(pem) = &self.ca_pem {
            for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let certificate = certificate.map_err(|e| format!("tls.ca_file: {e}"))?;
                roots.add(certificate).map_err(|e| format!("tls.ca_file: {e}"))?;
            }
        }
        if roots.is_empty() {
            return Err("no trusted root certificate: the system has none and tls.ca_file is empty".into());
        }
        // ring is the one provider built in, so the default is unambiguous.
        Ok(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
    }

    /// lapin's TLS settings: the extra roots are added to the system's.
    pub fn amqp(&self) -> lapin::tcp::OwnedTLSConfig {
        lapin::tcp::OwnedTLSConfig { identity: None, cert_chain: self.ca_pem.clone() }
    }

    /// `url` with the extra roots named as `sslrootcert`, unless it names its own; sqlx adds them
    /// to the system's. SQLite URLs are left alone.
    pub fn database_url(&self, url: &str) -> String {
        match &self.ca_file {
            Some(ca_file) if url.starts_with("postgres") && !url.contains("sslrootcert=") => {
                let path: String = ca_file.to_string_lossy().chars().flat_map(percent_encode).collect();
                format!("{url}{}sslrootcert={path}", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_string(),
        }
    }
}

/// Keeps a path intact inside a URL's query.
fn percent_encode(c: char) -> Vec<char> {
    if c.is_ascii_alphanumeric() || "/-_.~".contains(c) {
        vec![c]
    } else {
        let mut bytes = [0u8; 4];
        c.encode_utf8(&mut bytes).bytes().flat_map(|b| format!("%{b:02X}").chars().collect::<Vec<_>>()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_file_is_named_in_postgres_urls_only() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("my ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca.test".into()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        let trust = TlsTrust::load(&ca).unwrap();
        let url = trust.database_url("postgres://u@db/billpush?sslmode=verify-full");
        let encoded = ca.to_str().unwrap().replace(' ', "%20");
        assert_eq!(url, format!("postgres://u@db/billpush?sslmode=verify-full&sslrootcert={encoded}"));
        assert_eq!(trust.database_url("sqlite://billpush.db"), "sqlite://billpush.db");
        assert_eq!(trust.database_url("postgres://db/x?sslrootcert=/a.pem"), "postgres://db/x?sslrootcert=/a.pem");
        assert_eq!(TlsTrust::default().database_url("postgres://db/x"), "postgres://db/x");
    }

    #[test]
    fn a_file_without_certificates_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert!(TlsTrust::load(&empty).unwrap_err().contains("empty.pem"));
        assert!(TlsTrust::load(&dir.path().join("missing.pem")).unwrap_err().contains("missing.pem"));
    }
}
