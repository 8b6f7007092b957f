"""ed25519 envelopes."""

import json
import os

import fixtures
import testtools

from nova_clear.hostos import errors
from nova_clear.hostos import signing


class SigningTest(testtools.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.key = os.path.join(self.dir, 'key')
        signing.generate_key(self.key, self.key + '.pub')

    def test_seal_open(self):
        env = signing.seal(signing.load_private_key(self.key), b'payload')
        self.assertEqual(b'payload', signing.open_envelope(
            signing.load_public_key(self.key + '.pub'), env))
        self.assertEqual(0o600, os.stat(self.key).st_mode & 0o777)

    def test_tampered_payload(self):
        env = json.loads(signing.seal(signing.load_private_key(self.key),
                                      b'{"version":2}'))
        env['payload'] = '{"version":3}'
        self.assertRaises(errors.SignatureError, signing.open_envelope,
                          signing.load_public_key(self.key + '.pub'),
                          json.dumps(env).encode())

    def test_wrong_key(self):
        other = os.path.join(self.dir, 'other')
        signing.generate_key(other, other + '.pub')
        env = signing.seal(signing.load_private_key(other), b'x')
        e = self.assertRaises(errors.SignatureError, signing.open_envelope,
                              signing.load_public_key(self.key + '.pub'), env)
        self.assertIn('does not verify', str(e))

    def test_malformed(self):
        pub = signing.load_public_key(self.key + '.pub')
        for data in (b'', b'{}', b'{"payload": "x", "signature": "!!"}'):
            self.assertRaises(errors.SignatureError, signing.open_envelope,
                              pub, data)

    def test_existing_private_key_not_overwritten(self):
        self.assertRaises(FileExistsError, signing.generate_key, self.key,
                          self.key + '.pub2')
