#!/usr/bin/env node
// node-soap's client (WSSecurityCert, which signs with xml-crypto) against dkd: a WS-Security
// implementation that does not rest on libxmlsec, unlike zeep, python-xmlsec and xmlsec1.
//
//   node dkd_soap.js --wsdl URL?wsdl --cert C --key K --ca CA [--sign-cert C --sign-key K]
//                    --bsn BSN --from-oin OIN --expect clientsuwi|nietsgevonden
//
// 1. loads the WSDL dkd serves, over mutual TLS;
// 2. calls GSDReintegratieInfo with the WS-Addressing headers dkd requires, signed by
//    WSSecurityCert over the Body, the Timestamp and every WS-Addressing header (exc-c14n only,
//    RSA-SHA256, SHA-256);
// 3. verifies dkd's signed answer with xml-crypto: the signing certificate issued by the CA and
//    valid, the signature, every Reference, coverage of the Body, the Timestamp, every
//    WS-Addressing header and a SignatureConfirmation echoing our SignatureValue;
// 4. sends one more request whose signed Body is changed after signing, and reports the fault.
//
// Prints one JSON line; exits 1 (with the reason on stderr) when a step fails.
'use strict';

const fs = require('fs');
const https = require('https');
const crypto = require('crypto');
const soap = require('soap');
const { SignedXml } = require('xml-crypto');
const { DOMParser } = require('@xmldom/xmldom');
const xpath = require('xpath');

const NS = {
  soap: 'http://schemas.xmlsoap.org/soap/envelope/',
  wsa: 'http://www.w3.org/2005/08/addressing',
  wsse: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd',
  wsse11: 'http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd',
  wsu: 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd',
  ds: 'http://www.w3.org/2000/09/xmldsig#',
};
const EXC_C14N = 'http://www.w3.org/2001/10/xml-exc-c14n#';
const ACTION = 'http://bkwi.nl/SuwiML/Diensten/GSDDossierReintegratie-v0200/GSDReintegratieInfo';
const WSA_HEADERS = ['wsa:MessageID', 'wsa:Action', 'wsa:To', 'wsa:From'];

function args() {
  const a = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) {
      throw new Error(`bad argument ${argv[i]}`);
    }
    a[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ['wsdl', 'cert', 'key', 'ca', 'bsn', 'from-oin', 'expect']) {
    if (!a[k]) throw new Error(`--${k} is required`);
  }
  a['sign-cert'] = a['sign-cert'] || a.cert;
  a['sign-key'] = a['sign-key'] || a.key;
  return a;
}

function fail(msg) {
  process.stderr.write(`node-soap interop: ${msg}\n`);
  process.exit(1);
}

function escape(s) {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/// The WS-Addressing headers, each declaring its namespace, so WSSecurityCert can find them by
/// their prefixed name and xml-crypto can give each a wsu:Id.
function addressing(client, endpoint, fromOin) {
  const messageId = `urn:uuid:${crypto.randomUUID()}`;
  const wsa = `xmlns:wsa="${NS.wsa}"`;
  client.clearSoapHeaders();
  client.addSoapHeader(`<wsa:MessageID ${wsa}>${messageId}</wsa:MessageID>`);
  client.addSoapHeader(`<wsa:Action ${wsa}>${ACTION}</wsa:Action>`);
  client.addSoapHeader(`<wsa:To ${wsa}>${escape(endpoint)}</wsa:To>`);
  client.addSoapHeader(
    `<wsa:From ${wsa}><wsa:Address>http://localhost/node-soap?oin=${fromOin}</wsa:Address></wsa:From>`,
  );
  return messageId;
}

function security(a) {
  return new soap.WSSecurityCert(
    fs.readFileSync(a['sign-key']),
    fs.readFileSync(a['sign-cert']).toString(),
    '',
    {
      hasTimeStamp: true,
      // dkd takes exactly one Transform per Reference: exc-c14n (no enveloped-signature).
      signatureTransformations: [EXC_C14N],
      additionalReferences: WSA_HEADERS,
      signerOptions: { prefix: 'ds', idMode: 'wssecurity' },
    },
  );
}

function select(doc, expr) {
  return xpath.useNamespaces(NS)(expr, doc);
}

function idOf(el) {
  return el.getAttributeNS(NS.wsu, 'Id') || el.getAttribute('Id') || null;
}

function pemOf(b64) {
  const body = b64.replace(/\s+/g, '').match(/.{1,64}/g).join('\n');
  return `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
}

/// Checks dkd's signed answer independently of dkd's code. Returns what it established.
function verifyAnswer(xml, caPem, requestSignatureValue) {
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const sigs = select(doc, '/soap:Envelope/soap:Header/wsse:Security/ds:Signature');
  if (sigs.length !== 1) throw new Error(`expected one ds:Signature, found ${sigs.length}`);
  const tokenRef = select(sigs[0], 'ds:KeyInfo/wsse:SecurityTokenReference/wsse:Reference/@URI');
  if (tokenRef.length !== 1) throw new Error('no direct token reference in KeyInfo');
  const tokenId = tokenRef[0].value.replace(/^#/, '');
  const tokens = select(doc, '/soap:Envelope/soap:Header/wsse:Security/wsse:BinarySecurityToken')
    .filter((t) => idOf(t) === tokenId);
  if (tokens.length !== 1) throw new Error(`no BinarySecurityToken ${tokenId}`);
  const certPem = pemOf(tokens[0].textContent);
  const cert = new crypto.X509Certificate(certPem);
  const ca = new crypto.X509Certificate(fs.readFileSync(caPem));
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) {
    throw new Error(`the signing certificate ${cert.subject} is not issued by ${ca.subject}`);
  }
  const now = Date.now();
  if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) {
    throw new Error('the signing certificate is not valid now');
  }
  // Ids must be unique, or a Reference could resolve to another element than the one checked.
  const ids = select(doc, '//@*[local-name()="Id"]').map((n) => n.value);
  if (new Set(ids).size !== ids.length) throw new Error('duplicate Ids');

  const sig = new SignedXml({ publicCert: certPem, getCertFromKeyInfo: () => null });
  sig.loadSignature(sigs[0]);
  const ok = sig.checkSignature(xml);
  if (!ok) throw new Error('xml-crypto: the signature does not verify');
  const refs = sig.getReferences();
  for (const r of refs) {
    if (r.transforms.length !== 1 || r.transforms[0] !== EXC_C14N) {
      throw new Error(`Reference ${r.uri}: transforms ${r.transforms}`);
    }
  }
  const signed = new Set(refs.map((r) => (r.uri || '').replace(/^#/, '')));
  const must = [
    ['soap:Body', select(doc, '/soap:Envelope/soap:Body')],
    ['wsu:Timestamp', select(doc, '/soap:Envelope/soap:Header/wsse:Security/wsu:Timestamp')],
  ];
  for (const h of select(doc, '/soap:Envelope/soap:Header/wsa:*')) {
    must.push([`wsa:${h.localName}`, [h]]);
  }
  const confirmations = select(
    doc,
    '/soap:Envelope/soap:Header/wsse:Security/wsse11:SignatureConfirmation',
  ).filter((c) => c.getAttribute('Value').replace(/\s+/g, '') === requestSignatureValue);
  must.push(['wsse11:SignatureConfirmation', confirmations]);
  const covered = [];
  for (const [name, nodes] of must) {
    if (nodes.length !== 1 || !signed.has(idOf(nodes[0]))) {
      throw new Error(`${name} is not covered by the answer's signature`);
    }
    covered.push(name);
  }
  return { covered, signer_subject: cert.subject, references: refs.length };
}

/// The names of the request's elements that its Signature's References point at.
function signedParts(xml) {
  const doc = new DOMParser().parseFromString(xml, 'text/xml');
  const uris = select(doc, '//ds:Signature/ds:SignedInfo/ds:Reference/@URI')
    .map((u) => u.value.replace(/^#/, ''));
  return uris.map((id) => {
    const el = select(doc, '//*').find((e) => idOf(e) === id);
    return el ? el.tagName.replace(/^[^:]*:/, el.namespaceURI === NS.wsa ? 'wsa:' : '') : `#${id}?`;
  });
}

function text(xml, local) {
  const m = xml.match(new RegExp(`<(?:[A-Za-z0-9_]+:)?${local}[^>]*>([^<]*)<`));
  return m ? m[1] : null;
}

/// A client whose transport changes the signed request before it is sent.
class TamperingHttpClient extends soap.HttpClient {
  request(rurl, data, callback, exheaders, exoptions, caller) {
    const tampered = data.replace(/<Burgerservicenr>\d+</, '<Burgerservicenr>111222333<');
    if (tampered === data) throw new Error('no Burgerservicenr to tamper with');
    return super.request(rurl, tampered, callback, exheaders, exoptions, caller);
  }
}

async function main() {
  const a = args();
  const agent = new https.Agent({
    cert: fs.readFileSync(a.cert),
    key: fs.readFileSync(a.key),
    ca: fs.readFileSync(a.ca),
    keepAlive: false,
  });
  const endpoint = a.wsdl.replace(/\?wsdl$/, '');
  const options = { wsdl_options: { httpsAgent: agent }, endpoint };
  const client = await soap.createClientAsync(a.wsdl, options);
  client.setSecurity(security(a));
  const messageId = addressing(client, endpoint, a['from-oin']);
  let raw;
  let rawRequest;
  try {
    [, raw, , rawRequest] = await client.GSDReintegratieInfoAsync(
      { Burgerservicenr: a.bsn },
      { httpsAgent: agent },
    );
  } catch (e) {
    fail(`the signed request was refused: ${e.message}\n${e.body || ''}\n--- request:\n${client.lastRequest}`);
  }
  const requestSignatureValue = (text(rawRequest, 'SignatureValue') || '').replace(/\s+/g, '');
  if (!requestSignatureValue) fail(`no SignatureValue in the request:\n${rawRequest}`);
  const kind = raw.includes('<ClientSuwi>')
    ? 'clientsuwi'
    : raw.includes('NietsGevonden')
      ? 'nietsgevonden'
      : 'unknown';
  if (kind !== a.expect) fail(`expected ${a.expect}, got:\n${raw}`);
  let verified;
  try {
    verified = verifyAnswer(raw, a.ca, requestSignatureValue);
  } catch (e) {
    fail(`dkd's answer does not verify: ${e.message}\n${raw}`);
  }

  const tamperer = await soap.createClientAsync(a.wsdl, {
    ...options,
    httpClient: new TamperingHttpClient(),
  });
  tamperer.setSecurity(security(a));
  addressing(tamperer, endpoint, a['from-oin']);
  let tampered;
  try {
    await tamperer.GSDReintegratieInfoAsync({ Burgerservicenr: a.bsn }, { httpsAgent: agent });
    fail('the tampered request was answered');
  } catch (e) {
    const body = e.body || (e.response && e.response.data) || '';
    tampered = {
      status: e.response ? e.response.status : null,
      faultcode: text(body, 'faultcode'),
      code: text(body, 'Code'),
    };
  }

  process.stdout.write(
    `${JSON.stringify({
      kind,
      request_message_id: messageId,
      relates_to: text(raw, 'RelatesTo'),
      request_signed: signedParts(rawRequest),
      answer: verified,
      tampered,
    })}\n`,
  );
}

main().catch((e) => fail(e.stack || String(e)));
