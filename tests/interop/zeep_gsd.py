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
        [--to URL] [--endpoint URL] [--expect clientsuwi|nietsgevonden|fwi|fault] [--verbose]

Output: exactly one line of JSON on stdout describing the outcome (see ``main``).
Exit codes: 0 ok (and outcome matches --expect, if given); 1 outcome differs from --expect
(message on stderr); 2 any unexpected exception (traceback on stderr).
"""

import argparse
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
# WS-SECURITY HOOK — the single place where message signing will be added.
#
# A later change returns here a zeep wsse object: zeep.wsse.signature.BinarySignature extended so
# that, besides Body and wsu:Timestamp, every wsa:* header added by WsAddressing gets a wsu:Id and
# its own ds:Reference (exc-c14n, SHA-256 digests, RSA-SHA256), with a wsu:Timestamp added first
# (zeep never adds one itself) and verification of dkd's signed response. zeep applies the
# ``wsse`` object after the egress plugins, so the WS-Addressing headers already exist when it
# signs, and it verifies responses before the ingress plugins run.
# ---------------------------------------------------------------------------------------------
def ws_security(args):
    """Return the zeep ``wsse`` object to sign requests with, or None (no signing yet)."""
    return None


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
    client = zeep.Client(args.wsdl, transport=transport, plugins=[wsa], wsse=ws_security(args))
    # The port the WSDL names (its soap:address) unless --endpoint overrides the HTTP target.
    service = client.service
    if args.endpoint:
        service = client.create_service(service._binding.name, args.endpoint)

    try:
        result = getattr(service, OPERATION)(Burgerservicenr=args.bsn)
        out = describe_response(result, wsa.received)
    except Fault as fault:
        out = describe_fault(fault)
    finally:
        if args.verbose:
            for label, env in (("sent", wsa.sent), ("received", wsa.received)):
                if env is not None:
                    sys.stderr.write("--- %s ---\n%s\n" % (label, etree.tostring(env, pretty_print=True).decode()))

    out["http_status"] = transport.last_status
    out["relates_to"] = wsa.response_wsa.get("RelatesTo")
    out["action"] = wsa.response_wsa.get("Action")
    out["request_message_id"] = wsa.message_id
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
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        out = run(args)
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
