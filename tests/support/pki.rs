//! A test PKI: a CA that signs server and client certificates (rcgen).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

/// A CA and the PEM of certificates it signs.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("rcgen");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("rcgen");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("rcgen").pem();
        Ca { params, key, pem }
    }

    /// (certificate PEM, key PEM) for `name`, for a server or a client.
    pub fn issue(&self, name: &str, server: bool) -> (String, String) {
        let key = KeyPair::generate().expect("rcgen");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("rcgen");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("rcgen");
        (cert.pem(), key.serialize_pem())
    }

    /// (certificate PEM, key PEM) of a server certificate for `name` that
    /// expires at the start of `year` (UTC).
    pub fn issue_server_until(&self, name: &str, year: i32) -> (String, String) {
        let key = KeyPair::generate().expect("rcgen");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("rcgen");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(year, 1, 1);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("rcgen");
        (cert.pem(), key.serialize_pem())
    }

    /// (certificate PEM, key PEM) of a client certificate whose subject
    /// alternative names are `uris` then `dns`, in that order.
    pub fn issue_client(&self, uris: &[&str], dns: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("key pair");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, "client");
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().expect("an IA5 URI")));
        }
        for name in dns {
            params
                .subject_alt_names
                .push(SanType::DnsName((*name).try_into().expect("an IA5 name")));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signs");
        (cert.pem(), key.serialize_pem())
    }
}
