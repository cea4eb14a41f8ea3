//! dkd's own WSDL and XSDs (from `wsdl/`, compiled in), served with the configured public URL.

/// The XSD files the GSDDossierReintegratie WSDL imports, by the name used in `?xsd=NAME`.
const GSD_XSDS: [(&str, &str); 3] = [
    (
        "GSDDossierReintegratie-v0200.xsd",
        include_str!("../../wsdl/GSDDossierReintegratie-v0200.xsd"),
    ),
    (
        "SuwiML-Basisschema-v0801.xsd",
        include_str!("../../wsdl/SuwiML-Basisschema-v0801.xsd"),
    ),
    ("FWI-v0205.xsd", include_str!("../../wsdl/FWI-v0205.xsd")),
];
const GSD_WSDL: &str = include_str!("../../wsdl/GSDDossierReintegratie-v0200.wsdl");
const PLACEHOLDER: &str = "https://dkd.example/GSDDossierReintegratie-v0200";
/// The XSD files the IBVerwijsindex WSDL imports.
const VI_XSDS: [(&str, &str); 3] = [
    (
        "IBVerwijsindex-v0300.xsd",
        include_str!("../../wsdl/IBVerwijsindex-v0300.xsd"),
    ),
    (
        "SuwiML-Basisschema-v0801.xsd",
        include_str!("../../wsdl/SuwiML-Basisschema-v0801.xsd"),
    ),
    ("FWI-v0205.xsd", include_str!("../../wsdl/FWI-v0205.xsd")),
];
const VI_WSDL: &str = include_str!("../../wsdl/IBVerwijsindex-v0300.wsdl");
const VI_PLACEHOLDER: &str = "https://dkd.example/IBVerwijsindex-v0300";

/// The documents of one service, rendered once at start-up.
#[derive(Debug, Clone)]
pub struct Documents {
    /// The WSDL.
    pub wsdl: String,
    /// The XSDs by name.
    pub xsds: Vec<(&'static str, String)>,
}

impl Documents {
    /// Renders the GSDDossierReintegratie documents for a public URL: `soap:address` becomes the
    /// URL, and every `schemaLocation="X.xsd"` becomes `URL?xsd=X.xsd`, so a toolkit loading the
    /// WSDL fetches the imports from dkd.
    pub fn gsd(public_url: &str) -> Documents {
        Documents::render(GSD_WSDL, PLACEHOLDER, &GSD_XSDS, public_url)
    }

    /// The IBVerwijsindex documents (IB role), rendered the same way.
    pub fn verwijsindex(public_url: &str) -> Documents {
        Documents::render(VI_WSDL, VI_PLACEHOLDER, &VI_XSDS, public_url)
    }

    fn render(
        wsdl: &str,
        placeholder: &str,
        xsds: &[(&'static str, &str)],
        public_url: &str,
    ) -> Documents {
        let rewrite = |doc: &str| {
            let mut s = doc.replace(placeholder, public_url);
            for (name, _) in xsds {
                s = s.replace(
                    &format!("schemaLocation=\"{name}\""),
                    &format!("schemaLocation=\"{public_url}?xsd={name}\""),
                );
            }
            s
        };
        Documents {
            wsdl: rewrite(wsdl),
            xsds: xsds.iter().map(|(n, d)| (*n, rewrite(d))).collect(),
        }
    }

    /// An XSD by name.
    pub fn xsd(&self, name: &str) -> Option<&str> {
        self.xsds
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, d)| d.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wsdl_points_at_public_url_and_its_imports() {
        let d = Documents::gsd("https://gemeente.example:9443/GSDDossierReintegratie-v0200");
        assert!(d
            .wsdl
            .contains("location=\"https://gemeente.example:9443/GSDDossierReintegratie-v0200\""));
        assert!(!d.wsdl.contains("dkd.example"));
        assert!(d.wsdl.contains("?xsd=GSDDossierReintegratie-v0200.xsd\""));
        let xsd = d.xsd("GSDDossierReintegratie-v0200.xsd").expect("served");
        assert!(xsd.contains("?xsd=SuwiML-Basisschema-v0801.xsd\""));
        assert!(d.xsd("../etc/passwd").is_none());
        let v = Documents::verwijsindex("https://ib.example/IBVerwijsindex-v0300");
        assert!(v
            .wsdl
            .contains("location=\"https://ib.example/IBVerwijsindex-v0300\""));
        assert!(v.wsdl.contains("?xsd=IBVerwijsindex-v0300.xsd\""));
        assert!(v.xsd("IBVerwijsindex-v0300.xsd").is_some());
    }
}
