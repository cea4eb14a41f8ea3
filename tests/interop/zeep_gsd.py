#!/usr/bin/env python3
"""Third-party interop client for dkd's GSDDossierReintegratie-v0200 service, built on zeep.

The Rust integration tests run this against a live dkd over mutual TLS. It plays an independent
SOAP toolkit: the WSDL and its XSD imports (``?wsdl`` / ``?xsd=NAME.xsd``) are loaded and
interpreted by zeep, the request body is serialised by zeep from the schema, and the response is
deserialised by zeep in strict mode, so a namespace or element-order mistake on either side
surfaces here.

Usage:
    python zeep_gsd.py --wsdl URL --cert client.pem --key client-key.pem --ca ca.pem \
        --bsn 123456782 --from-oin 00000099000000000002 \
        [--to URL] [--endpoint URL] [--expect clientsuwi|nietsgevonden|fwi|fault] [--verbose] \
        [--sign-cert signer.pem --sign-key signer-key.pem [--sign-ca ca.pem]]

With --sign-cert/--sign-key the request is signed per Digikoppeling WUS 2W-be-S (see
``DigikoppelingSignature``) and the response must carry a valid signature: checked with
wssec.verify_envelope (tests/interop/wssec.py) against --sign-ca (default --ca), including a
wsse11:SignatureConfirmation equal to the request's SignatureValue. Without them nothing is signed
or verified (the behaviour before signing existed).

Output: exactly one line of JSON on stdout describing the outcome (see ``main``), with
"response_signed": true when the response signature was verified (signing mode), or, without
--sign-*, whether the response merely carries a wsse:Security/ds:Signature (not verified).
Exit codes: 0 ok (and outcome matches --expect, if given); 1 outcome differs from --expect
(message on stderr); 2 the response signature failed verification (message on stderr, and a
JSON line with "kind": "bad_response_signature" and "signature_errors") or any unexpected
exception (traceback on stderr).
"""

import argparse
import base64
import datetime
import json
import sys
import traceback
import uuid

import requests
import zeep
from lxml import etree
from zeep.exceptions import Fault
from zeep.plugins import Plugin
from zeep.transports import Transport
from zeep.wsdl.utils import get_or_create_header

WSA_NS = "http://www.w3.org/2005/08/addressing"
# Namespaces an older or built-in WS-Addressing plugin may have used; their headers are removed.
OLD_WSA_NS = ("http://schemas.xmlsoap.org/ws/2004/08/addressing", WSA_NS)
SMLS_NS = "http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie/v0200"
FWI_NS = "http://bkwi.nl/SuwiML/FWI/v0205"
OPERATION = "GSDReintegratieInfo"
KINDS = ("clientsuwi", "nietsgevonden", "fwi", "fault")


class WsAddressing(Plugin):
    """Egress: puts exactly wsa:Action, wsa:MessageID, wsa:To and wsa:From/wsa:Address
    (WS-Addressing 1.0, 2005/08 namespace) in the SOAP header, replacing whatever zeep's
    built-in WsAddressingPlugin added (zeep applies that one by itself whenever the WSDL
    carries wsaw:Action; it has no From). No other header blocks are added.

    Ingress: records the response's WS-Addressing headers and the envelope (faults included:
    zeep runs ingress plugins before it raises Fault)."""

    def __init__(self, from_address, to=None):
        self.from_address = from_address
        self.to = to
        self.message_id = None
        self.sent = None
        self.received = None
        self.response_wsa = {}

    def egress(self, envelope, http_headers, operation, binding_options):
        action = operation.abstract.wsa_action or operation.soapaction
        if not action:
            raise RuntimeError("operation %s has no wsaw:Action in the WSDL" % operation.name)
        header = get_or_create_header(envelope)
        for child in list(header):
            if isinstance(child.tag, str) and etree.QName(child).namespace in OLD_WSA_NS:
                header.remove(child)
        self.message_id = "urn:uuid:%s" % uuid.uuid4()
        E = lambda name: etree.SubElement(header, etree.QName(WSA_NS, name), nsmap={"wsa": WSA_NS})  # noqa: E731
        E("Action").text = action
        E("MessageID").text = self.message_id
        E("To").text = self.to or binding_options["address"]
        frm = E("From")
        etree.SubElement(frm, etree.QName(WSA_NS, "Address")).text = self.from_address
        etree.cleanup_namespaces(envelope, top_nsmap={"wsa": WSA_NS})
        self.sent = envelope
        return envelope, http_headers

    def ingress(self, envelope, http_headers, operation):
        self.received = envelope
        header = envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Header")
        wsa = {}
        if header is not None:
            for child in header:
                if not isinstance(child.tag, str) or etree.QName(child).namespace != WSA_NS:
                    continue
                name = etree.QName(child).localname
                if len(child):
                    wsa[name] = child.findtext("{%s}Address" % WSA_NS)
                else:
                    wsa[name] = child.text
        self.response_wsa = wsa
        return envelope, http_headers


class RecordingTransport(Transport):
    """Transport that remembers the HTTP status of the last POST (dkd answers 200 or 500)."""

    last_status = None

    def post_xml(self, address, envelope, headers):
        response = super().post_xml(address, envelope, headers)
        self.last_status = response.status_code
        return response


def mtls_session(cert, key, ca):
    s = requests.Session()
    # Without this, REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment silently override
    # s.verify (requests merges environment settings per request), and *_PROXY could route
    # 127.0.0.1 through a proxy.
    s.trust_env = False
    s.cert = (cert, key)
    s.verify = ca
    return s


# ---------------------------------------------------------------------------------------------
# WS-SECURITY HOOK — the single place where message signing is set up.
#
# ws_security() returns a zeep wsse object: zeep.wsse.signature.BinarySignature extended so that,
# besides Body and wsu:Timestamp, every wsa:* header added by WsAddressing gets a wsu:Id and its
# own ds:Reference (exc-c14n, SHA-256 digests, RSA-SHA256), with a wsu:Timestamp added first
# (zeep never adds one itself), and so that dkd's signed response is verified. zeep applies the
# ``wsse`` object after the egress plugins, so the WS-Addressing headers already exist when it
# signs, and it verifies responses (faults included) before the ingress plugins run.
# ---------------------------------------------------------------------------------------------
class ResponseSignatureError(Exception):
    """The response's WS-Security signature did not verify; ``errors`` lists why."""

    def __init__(self, errors):
        super().__init__("; ".join(errors))
        self.errors = errors


def make_digikoppeling_signature(sign_cert, sign_key, ca, ttl=300):
    """Build the zeep wsse object (imports xmlsec/wssec only when signing is asked for)."""
    import xmlsec
    from zeep import ns as zns
    from zeep.wsse.signature import BinarySignature, _make_sign_key, _sign_node
    from zeep.wsse.utils import WSSE, WSU, ensure_id, get_security_header, get_timestamp
    from zeep.utils import detect_soap_env

    import wssec  # tests/interop/wssec.py, next to this file (on sys.path as the script's dir)

    class DigikoppelingSignature(BinarySignature):
        """zeep's BinarySignature as Digikoppeling WUS 2W-be-S wants it.

        zeep's own apply() signs only Body and Timestamp, with RSA-SHA1/SHA-1, adds no Timestamp
        and puts the BinarySecurityToken after the Signature. This one builds, in wsse:Security
        (soapenv:mustUnderstand="1"): wsu:Timestamp (Created now, Expires now+ttl, zeep's
        ``YYYY-MM-DDTHH:MM:SSZ`` format), wsse:BinarySecurityToken (X509v3), ds:Signature
        (exc-c14n, RSA-SHA256, one SHA-256 Reference per part: Timestamp, every wsa:* header,
        Body; KeyInfo = SecurityTokenReference/Reference to the token). Ids and prefixes are
        zeep's (``id-<uuid>``; ds as default namespace; the wsu prefix lxml invents, ``ns0``, on
        Body and the wsa headers) — deliberately not wssec.py's, so dkd meets two producers."""

        def __init__(self):
            super().__init__(sign_key, sign_cert, signature_method=xmlsec.Transform.RSA_SHA256,
                             digest_method=xmlsec.Transform.SHA256)
            self.ca = ca
            self.cert_der = wssec.load_pem_cert_der(sign_cert)
            self.signature_value = None  # of the last request, for SignatureConfirmation
            self.received = None  # last response envelope (also when verification fails)
            self.verification = None  # wssec.verify_envelope result for it

        def apply(self, envelope, headers):
            soap_env = detect_soap_env(envelope)
            security = get_security_header(envelope)
            security.set(etree.QName(soap_env, "mustUnderstand"), "1")
            now = datetime.datetime.now(datetime.timezone.utc)
            timestamp = WSU.Timestamp(
                WSU.Created(get_timestamp(now, zulu_timestamp=True)),
                WSU.Expires(get_timestamp(now + datetime.timedelta(seconds=ttl), zulu_timestamp=True)),
            )
            security.insert(0, timestamp)
            bst = WSSE.BinarySecurityToken(
                base64.b64encode(self.cert_der).decode(),
                ValueType=wssec.X509V3, EncodingType=wssec.BASE64_BINARY)
            bst_id = ensure_id(bst)
            security.insert(1, bst)
            signature = xmlsec.template.create(envelope, xmlsec.Transform.EXCL_C14N, self.signature_method)
            security.insert(2, signature)

            ctx = xmlsec.SignatureContext()
            ctx.key = _make_sign_key(self.key_data, self.cert_data, self.password)
            header = envelope.find(etree.QName(soap_env, "Header"))
            wsa_headers = [h for h in header if isinstance(h.tag, str) and etree.QName(h).namespace == WSA_NS]
            for node in [timestamp] + wsa_headers + [envelope.find(etree.QName(soap_env, "Body"))]:
                _sign_node(ctx, signature, node, self.digest_method)
            key_info = xmlsec.template.ensure_key_info(signature)
            sec_token_ref = etree.SubElement(key_info, etree.QName(zns.WSSE, "SecurityTokenReference"))
            etree.SubElement(sec_token_ref, etree.QName(zns.WSSE, "Reference"),
                             {"URI": "#" + bst_id, "ValueType": wssec.X509V3})
            ctx.sign(signature)
            self.signature_value = "".join(signature.findtext(etree.QName(zns.DS, "SignatureValue")).split())
            return envelope, headers

        def verify(self, envelope):
            self.received = envelope
            self.verification = wssec.verify_envelope(
                envelope, self.ca, request_signature_value=self.signature_value)
            if not self.verification["ok"]:
                raise ResponseSignatureError(self.verification["errors"])
            return envelope

    return DigikoppelingSignature()


def ws_security(args):
    """Return the zeep ``wsse`` object to sign requests with, or None when not signing."""
    if not (args.sign_cert or args.sign_key):
        return None
    if not (args.sign_cert and args.sign_key):
        raise SystemExit("--sign-cert and --sign-key go together")
    return make_digikoppeling_signature(args.sign_cert, args.sign_key, args.sign_ca or args.ca)


def has_signature(envelope):
    """Whether a response envelope carries a wsse:Security header with a ds:Signature."""
    if envelope is None:
        return False
    return envelope.find(
        "{http://schemas.xmlsoap.org/soap/envelope/}Header"
        "/{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}Security"
        "/{http://www.w3.org/2000/09/xmldsig#}Signature") is not None


def _text(el, path):
    return el.findtext(path) if el is not None else None


def _meldingen(fwi_el):
    out = []
    for m in fwi_el:
        if isinstance(m.tag, str):
            out.append({"soort": etree.QName(m).localname, "code": _text(m, "Code"), "tekst": _text(m, "Tekst")})
    return out


def check_unqualified(resp):
    """zeep reads namespace-qualified children without complaint, so check the wire form here:
    below the response element only fwi:FWI / fwi:NietsGevonden are qualified, every other
    element (also inside fwi:FWI) is unqualified (elementFormDefault="unqualified")."""
    for child in resp:
        if not isinstance(child.tag, str):
            continue
        allowed_top = child.tag in ("{%s}FWI" % FWI_NS, "{%s}NietsGevonden" % FWI_NS)
        if etree.QName(child).namespace is not None and not allowed_top:
            raise RuntimeError("qualified element %s in the response (must be unqualified)" % child.tag)
        for el in child.iterdescendants():
            if isinstance(el.tag, str) and etree.QName(el).namespace is not None:
                raise RuntimeError("qualified element %s in the response (must be unqualified)" % el.tag)


def describe_response(result, received):
    """Classify a non-fault reply. The kind comes from the raw body (zeep maps the untyped
    fwi:NietsGevonden to None, indistinguishable from absent); the data comes from zeep's own
    deserialisation, so this checks that zeep could read it."""
    body = received.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    resp = body.find("{%s}GSDReintegratieInfoResponse" % SMLS_NS) if body is not None else None
    if resp is None:
        raise RuntimeError("no smls:GSDReintegratieInfoResponse in the response body")
    first = next((c for c in resp if isinstance(c.tag, str)), None)
    if first is None:
        raise RuntimeError("empty GSDReintegratieInfoResponse")
    check_unqualified(resp)
    tag = first.tag
    if tag == "ClientSuwi":
        cs = result["ClientSuwi"] if result is not None else None
        if cs is None:
            raise RuntimeError("zeep did not deserialise ClientSuwi")
        relaties = cs["AtlRelatie"] or []
        voorzieningen = [v for r in relaties for v in (r["ReIntegratievoorziening"] or [])]
        lks = []
        for v in voorzieningen:
            lk = v["Loonkostensubsidie"]
            if lk is not None and lk["PercLoonwaardeTovWml"] is not None:
                pct = lk["PercLoonwaardeTovWml"]["Percentage"]
                if pct is not None:
                    lks.append(pct)
        out = {
            "kind": "clientsuwi",
            "bsn": cs["Burgerservicenr"],
            "achternaam": cs["SignificantDeelVanDeAchternaam"],
            "atl_relaties": len(relaties),
            "voorzieningen": len(voorzieningen),
            "lks": lks,
        }
        fwi = resp.find("{%s}FWI" % FWI_NS)
        if fwi is not None:
            out["fwi"] = _meldingen(fwi)
        return out
    if tag == "{%s}NietsGevonden" % FWI_NS:
        return {"kind": "nietsgevonden"}
    if tag == "{%s}FWI" % FWI_NS:
        return {"kind": "fwi", "fwi": _meldingen(first)}
    raise RuntimeError("unexpected response element %s" % tag)


def describe_fault(fault):
    out = {"kind": "fault", "faultcode": fault.code, "faultstring": fault.message, "code": None}
    detail = fault.detail
    if detail is not None and not isinstance(detail, str):
        fout = detail.find("{%s}Fout" % FWI_NS)
        if fout is not None:
            out["code"] = fout.findtext("Code")
            out["tekst"] = fout.findtext("Tekst")
        parent = detail.getparent()
        if fault.code and ":" in fault.code and parent is not None:
            out["faultcode_ns"] = parent.nsmap.get(fault.code.split(":", 1)[0])
    return out


def run(args):
    session = mtls_session(args.cert, args.key, args.ca)
    transport = RecordingTransport(session=session, timeout=args.timeout, operation_timeout=args.timeout)
    wsa = WsAddressing("http://example.org/client?oin=%s" % args.from_oin, to=args.to)
    wsse = ws_security(args)
    client = zeep.Client(args.wsdl, transport=transport, plugins=[wsa], wsse=wsse)
    # The port the WSDL names (its soap:address) unless --endpoint overrides the HTTP target.
    service = client.service
    if args.endpoint:
        service = client.create_service(service._binding.name, args.endpoint)

    try:
        result = getattr(service, OPERATION)(Burgerservicenr=args.bsn)
        out = describe_response(result, wsa.received)
    except Fault as fault:
        out = describe_fault(fault)
    except ResponseSignatureError as e:
        e.http_status = transport.last_status
        raise
    finally:
        if args.verbose:
            received = wsa.received if wsa.received is not None else getattr(wsse, "received", None)
            for label, env in (("sent", wsa.sent), ("received", received)):
                if env is not None:
                    sys.stderr.write("--- %s ---\n%s\n" % (label, etree.tostring(env, pretty_print=True).decode()))

    out["http_status"] = transport.last_status
    out["relates_to"] = wsa.response_wsa.get("RelatesTo")
    out["action"] = wsa.response_wsa.get("Action")
    out["request_message_id"] = wsa.message_id
    if wsse is not None:
        out["response_signed"] = bool(wsse.verification and wsse.verification["ok"])
        out["response_signer_oin"] = wsse.verification["signer_oin"] if wsse.verification else None
    else:
        out["response_signed"] = has_signature(wsa.received)
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wsdl", required=True, help="WSDL URL, e.g. https://127.0.0.1:PORT/GSDDossierReintegratie-v0200?wsdl")
    p.add_argument("--cert", required=True, help="client certificate (PEM)")
    p.add_argument("--key", required=True, help="client private key (PEM)")
    p.add_argument("--ca", required=True, help="CA bundle that signed the server certificate (PEM)")
    p.add_argument("--bsn", required=True)
    p.add_argument("--from-oin", required=True, help="OIN put in wsa:From/wsa:Address as ?oin=")
    p.add_argument("--to", help="wsa:To value (default: the WSDL's soap:address, or --endpoint)")
    p.add_argument("--endpoint", help="HTTP address to POST to (default: the WSDL's soap:address)")
    p.add_argument("--expect", choices=KINDS)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--verbose", action="store_true", help="dump sent and received envelopes to stderr")
    p.add_argument("--sign-cert", help="sign the request with this certificate (PEM); verify the response")
    p.add_argument("--sign-key", help="private key (PEM) for --sign-cert")
    p.add_argument("--sign-ca", help="CA bundle the response signing certificate must chain to (default --ca)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        out = run(args)
    except ResponseSignatureError as e:
        sys.stderr.write("response signature verification failed: %s\n" % e)
        print(json.dumps({"kind": "bad_response_signature", "response_signed": False,
                          "signature_errors": e.errors, "http_status": getattr(e, "http_status", None)},
                         ensure_ascii=False, sort_keys=True), flush=True)
        return 2
    except Exception:  # noqa: BLE001 - any failure here is a test failure with a traceback
        traceback.print_exc(file=sys.stderr)
        return 2
    print(json.dumps(out, ensure_ascii=False, sort_keys=True), flush=True)
    if args.expect and out["kind"] != args.expect:
        sys.stderr.write("expected outcome %r, got %r\n" % (args.expect, out["kind"]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
