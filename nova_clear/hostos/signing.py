"""ed25519 signing of top manifests.

A published top manifest is an *envelope*, one JSON file replaced
atomically: ``{"payload": "<top manifest JSON>", "signature": "<base64>"}``.
The signature covers the payload's exact bytes.
"""

import base64
import json
import os

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives import serialization

from nova_clear.hostos import errors
from nova_clear.hostos import manifest


def generate_key(private_path, public_path):
    """Write a new key pair as PEM; the private key is mode 0600."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'wb') as f:
        f.write(private)
    with open(public_path, 'wb') as f:
        f.write(public)


def load_private_key(path):
    with open(path, 'rb') as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise errors.SignatureError('%s is not an ed25519 private key' % path)
    return key


def load_public_key(path):
    with open(path, 'rb') as f:
        try:
            key = serialization.load_pem_public_key(f.read())
        except ValueError as e:
            raise errors.SignatureError('cannot read public key %s: %s'
                                        % (path, e))
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise errors.SignatureError('%s is not an ed25519 public key' % path)
    return key


def seal(private_key, payload):
    """The envelope bytes for ``payload`` signed by ``private_key``."""
    return json.dumps({
        'payload': payload.decode(),
        'signature': base64.b64encode(private_key.sign(payload)).decode(),
    }, sort_keys=True).encode()


def open_envelope(public_key, data):
    """The payload of a verified envelope; SignatureError otherwise."""
    doc = manifest.load_json(data, 'signed top manifest', manifest.MAX_TOP,
                             errors.SignatureError)
    try:
        payload = doc['payload'].encode()
        signature = base64.b64decode(doc['signature'], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError,
            UnicodeDecodeError) as e:
        raise errors.SignatureError('malformed signed top manifest: %s' % e)
    try:
        public_key.verify(signature, payload)
    except InvalidSignature:
        raise errors.SignatureError(
            'signature of the top manifest does not verify with the '
            'configured key (tampered, or signed by another key)')
    return payload
