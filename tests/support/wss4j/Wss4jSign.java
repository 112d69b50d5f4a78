/*
 * An independent WS-Security signer for hiem's tests: Apache WSS4J 1.6 (Debian's libwss4j-java) on
 * Apache Santuario (libxml-security-java), run as its own process by tests/support/wss4j.py.
 *
 *   java -cp <jars>:<classes> Wss4jSign --keystore F.p12 --password PW --alias A
 *        [--layout default|transforms-only|none] [--key-ref bst|issuer-serial|ski|thumbprint|samlid]
 *        [--timestamp-age SECONDS]   (Created/Expires moved SECONDS into the past before signing)
 *        [--assertion FILE]                      < envelope.xml > signed.xml
 *   java -cp <jars>:<classes> Wss4jSign --sign-assertion --keystore F.p12 --password PW --alias A
 *                                                < assertion.xml > signed-assertion.xml
 *
 * Errors: a message on stderr and exit code 2.
 */

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.FileInputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import javax.xml.XMLConstants;
import javax.xml.crypto.dsig.spec.C14NMethodParameterSpec;
import javax.xml.parsers.DocumentBuilder;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.transform.OutputKeys;
import javax.xml.transform.Transformer;
import javax.xml.transform.TransformerFactory;
import javax.xml.transform.dom.DOMSource;
import javax.xml.transform.stream.StreamResult;

import org.apache.ws.security.WSConstants;
import org.apache.ws.security.WSEncryptionPart;
import org.apache.ws.security.WSSConfig;
import org.apache.ws.security.WSSecurityException;
import org.apache.ws.security.components.crypto.Crypto;
import org.apache.ws.security.components.crypto.Merlin;
import org.apache.ws.security.message.WSSecHeader;
import org.apache.ws.security.message.WSSecSignature;
import org.apache.ws.security.message.WSSecTimestamp;
import org.apache.xml.security.algorithms.MessageDigestAlgorithm;
import org.apache.xml.security.c14n.Canonicalizer;
import org.apache.xml.security.signature.XMLSignature;
import org.apache.xml.security.transforms.Transforms;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.Node;

public final class Wss4jSign {
    static final String WSA_NS = "http://www.w3.org/2005/08/addressing";
    static final String SAML2_NS = "urn:oasis:names:tc:SAML:2.0:assertion";
    static final String RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
    static final String SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256";

    /** Usage or input errors: reported as such, without a stack trace. */
    static final class UsageError extends Exception {
        private static final long serialVersionUID = 1L;

        UsageError(String message) {
            super(message);
        }
    }

    /**
     * WSSecSignature with InclusiveNamespaces on the References' exc-c14n Transforms only. WSS4J 1.6 has one
     * switch for both places (WSSConfig.wsiBSPCompliant), so this drops the parameters from SignedInfo's
     * CanonicalizationMethod after prepare(); computeSignature() builds SignedInfo from that protected field.
     */
    static final class TransformsOnlySignature extends WSSecSignature {
        TransformsOnlySignature(WSSConfig config) {
            super(config);
        }

        @Override
        public void prepare(Document doc, Crypto cr, WSSecHeader secHeader) throws WSSecurityException {
            super.prepare(doc, cr, secHeader);
            try {
                c14nMethod = signatureFactory.newCanonicalizationMethod(
                        WSConstants.C14N_EXCL_OMIT_COMMENTS, (C14NMethodParameterSpec) null);
            } catch (Exception e) {
                throw new WSSecurityException(WSSecurityException.FAILED_SIGNATURE, "noXMLSig", null, e);
            }
        }
    }

    public static void main(String[] args) {
        PrintStream out = System.out;
        try {
            byte[] result = run(args, System.in.readAllBytes());
            out.write(result);
            out.flush();
            System.exit(0);
        } catch (UsageError e) {
            System.err.println("Wss4jSign: " + e.getMessage());
        } catch (Throwable e) {
            System.err.println("Wss4jSign: " + e);
            e.printStackTrace(System.err);
        }
        System.exit(2);
    }

    static byte[] run(String[] args, byte[] input) throws Exception {
        Map<String, String> opts = new HashMap<>();
        boolean signAssertion = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--sign-assertion":
                    signAssertion = true;
                    break;
                case "--keystore":
                case "--password":
                case "--alias":
                case "--layout":
                case "--key-ref":
                case "--assertion":
                case "--timestamp-age":
                    if (i + 1 >= args.length) {
                        throw new UsageError(a + " needs a value");
                    }
                    opts.put(a, args[++i]);
                    break;
                default:
                    throw new UsageError("unknown argument " + a);
            }
        }
        for (String required : new String[] {"--keystore", "--password", "--alias"}) {
            if (!opts.containsKey(required)) {
                throw new UsageError("missing " + required);
            }
        }
        KeyStore keyStore = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(opts.get("--keystore"))) {
            keyStore.load(in, opts.get("--password").toCharArray());
        }
        String alias = opts.get("--alias");
        if (!keyStore.isKeyEntry(alias)) {
            throw new UsageError("no private key under alias " + alias + " in " + opts.get("--keystore"));
        }
        Document doc = parse(input);
        if (signAssertion) {
            signAssertion(doc, keyStore, alias, opts.get("--password"));
        } else {
            String layout = opts.getOrDefault("--layout", "default");
            String keyRef = opts.getOrDefault("--key-ref", "bst");
            Element assertion = null;
            if (opts.containsKey("--assertion")) {
                assertion = parse(Files.readAllBytes(Paths.get(opts.get("--assertion")))).getDocumentElement();
            }
            int age = Integer.parseInt(opts.getOrDefault("--timestamp-age", "0"));
            signEnvelope(doc, keyStore, alias, opts.get("--password"), layout, keyRef, assertion, age);
        }
        return serialize(doc);
    }

    static Document parse(byte[] xml) throws Exception {
        DocumentBuilderFactory dbf = DocumentBuilderFactory.newInstance();
        dbf.setNamespaceAware(true);
        dbf.setFeature(XMLConstants.FEATURE_SECURE_PROCESSING, true);
        dbf.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        dbf.setExpandEntityReferences(false);
        DocumentBuilder db = dbf.newDocumentBuilder();
        return db.parse(new ByteArrayInputStream(xml));
    }

    static byte[] serialize(Document doc) throws Exception {
        Transformer transformer = TransformerFactory.newInstance().newTransformer();
        transformer.setOutputProperty(OutputKeys.ENCODING, "UTF-8");
        transformer.setOutputProperty(OutputKeys.INDENT, "no");
        ByteArrayOutputStream buffer = new ByteArrayOutputStream();
        transformer.transform(new DOMSource(doc), new StreamResult(buffer));
        return buffer.toByteArray();
    }

    static int keyIdentifierType(String keyRef) throws UsageError {
        switch (keyRef) {
            case "bst":
                return WSConstants.BST_DIRECT_REFERENCE;
            case "issuer-serial":
                return WSConstants.ISSUER_SERIAL;
            case "ski":
                return WSConstants.SKI_KEY_IDENTIFIER;
            case "thumbprint":
                return WSConstants.THUMBPRINT_IDENTIFIER;
            case "samlid":
                return WSConstants.CUSTOM_KEY_IDENTIFIER;
            default:
                throw new UsageError("unknown --key-ref " + keyRef);
        }
    }

    static void signEnvelope(Document doc, KeyStore keyStore, String alias, String password, String layout,
                             String keyRef, Element assertion, int timestampAge) throws Exception {
        WSSConfig.init();
        Merlin crypto = new Merlin();
        crypto.setKeyStore(keyStore);

        WSSConfig config = WSSConfig.getNewInstance();
        WSSecSignature signature;
        switch (layout) {
            case "default":
                signature = new WSSecSignature(config);
                break;
            case "transforms-only":
                signature = new TransformsOnlySignature(config);
                break;
            case "none":
                // WSS4J 1.6's only switch for InclusiveNamespaces (2.x calls it addInclusivePrefixes)
                config.setWsiBSPCompliant(false);
                signature = new WSSecSignature(config);
                break;
            default:
                throw new UsageError("unknown --layout " + layout);
        }
        signature.setKeyIdentifierType(keyIdentifierType(keyRef));
        if ("samlid".equals(keyRef)) {
            if (assertion == null) {
                throw new UsageError("--key-ref samlid needs --assertion");
            }
            String assertionId = assertion.getAttributeNS(null, "ID");
            if (assertionId.isEmpty()) {
                throw new UsageError("the --assertion has no ID attribute");
            }
            signature.setCustomTokenValueType(WSConstants.WSS_SAML2_KI_VALUE_TYPE);
            signature.setCustomTokenId(assertionId);
        }
        signature.setUserInfo(alias, password);
        signature.setSignatureAlgorithm(RSA_SHA256);
        signature.setDigestAlgo(SHA256);

        WSSecHeader secHeader = new WSSecHeader();
        secHeader.setMustUnderstand(true);
        secHeader.insertSecurityHeader(doc);

        WSSecTimestamp timestamp = new WSSecTimestamp(config);
        timestamp.setTimeToLive(300);
        timestamp.build(doc, secHeader);
        if (timestampAge > 0) {
            // A message made timestampAge seconds ago: Created and Expires moved back before signing, so the
            // signature covers the old instants (the way a message held up in transit, or replayed, looks).
            ageTimestamp(timestamp.getElement(), timestampAge);
        }

        if (assertion != null) {
            // after the Timestamp, before the Signature (which is then appended, not prepended)
            Node imported = doc.importNode(assertion, true);
            secHeader.getSecurityHeader().appendChild(imported);
        }

        Element envelope = doc.getDocumentElement();
        String soapNs = envelope.getNamespaceURI();
        List<WSEncryptionPart> parts = new ArrayList<>();
        parts.add(new WSEncryptionPart(WSConstants.ELEM_BODY, soapNs, "Element"));
        parts.add(new WSEncryptionPart(WSConstants.TIMESTAMP_TOKEN_LN, WSConstants.WSU_NS, "Element"));
        for (Node child = envelope.getFirstChild(); child != null; child = child.getNextSibling()) {
            if (child instanceof Element && WSConstants.ELEM_HEADER.equals(child.getLocalName())
                    && soapNs.equals(child.getNamespaceURI())) {
                for (Node block = child.getFirstChild(); block != null; block = block.getNextSibling()) {
                    if (block instanceof Element && WSA_NS.equals(block.getNamespaceURI())) {
                        WSEncryptionPart part = new WSEncryptionPart(block.getLocalName(), WSA_NS, "Element");
                        part.setElement((Element) block);
                        parts.add(part);
                    }
                }
            }
        }
        signature.setParts(parts);

        signature.prepare(doc, crypto, secHeader);
        List<javax.xml.crypto.dsig.Reference> references = signature.addReferencesToSign(parts, secHeader);
        // WSS4J's own build() prepends (Signature before Timestamp); with an assertion, append after it
        signature.computeSignature(references, assertion == null, null);
        signature.prependBSTElementToHeader(secHeader);
    }

    static void ageTimestamp(Element timestamp, int seconds) {
        java.time.format.DateTimeFormatter format = java.time.format.DateTimeFormatter
                .ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(java.time.ZoneOffset.UTC);
        for (Node child = timestamp.getFirstChild(); child != null; child = child.getNextSibling()) {
            if (child instanceof Element && WSConstants.WSU_NS.equals(child.getNamespaceURI())) {
                java.time.Instant instant = java.time.Instant.parse(child.getTextContent().trim());
                child.setTextContent(format.format(instant.minusSeconds(seconds)));
            }
        }
    }

    static void signAssertion(Document doc, KeyStore keyStore, String alias, String password) throws Exception {
        org.apache.xml.security.Init.init();
        Element root = doc.getDocumentElement();
        if (!SAML2_NS.equals(root.getNamespaceURI()) || !"Assertion".equals(root.getLocalName())) {
            throw new UsageError("stdin is not a saml2:Assertion");
        }
        String id = root.getAttributeNS(null, "ID");
        if (id.isEmpty()) {
            throw new UsageError("the assertion has no ID attribute");
        }
        root.setIdAttributeNS(null, "ID", true);
        Element issuer = null;
        for (Node child = root.getFirstChild(); child != null; child = child.getNextSibling()) {
            if (child instanceof Element) {
                if (SAML2_NS.equals(child.getNamespaceURI()) && "Issuer".equals(child.getLocalName())) {
                    issuer = (Element) child;
                }
                break;
            }
        }
        if (issuer == null) {
            throw new UsageError("the assertion's first child is not saml2:Issuer");
        }
        PrivateKey key = (PrivateKey) keyStore.getKey(alias, password.toCharArray());
        X509Certificate cert = (X509Certificate) keyStore.getCertificate(alias);

        XMLSignature signature = new XMLSignature(doc, "", XMLSignature.ALGO_ID_SIGNATURE_RSA_SHA256,
                Canonicalizer.ALGO_ID_C14N_EXCL_OMIT_COMMENTS);
        root.insertBefore(signature.getElement(), issuer.getNextSibling());
        Transforms transforms = new Transforms(doc);
        transforms.addTransform(Transforms.TRANSFORM_ENVELOPED_SIGNATURE);
        transforms.addTransform(Transforms.TRANSFORM_C14N_EXCL_OMIT_COMMENTS);
        signature.addDocument("#" + id, transforms, MessageDigestAlgorithm.ALGO_ID_DIGEST_SHA256);
        signature.addKeyInfo(cert);
        signature.sign(key);
    }

    private Wss4jSign() {
    }
}
