import testtools

from nova_clear import safe_json


class TestSafeJson(testtools.TestCase):

    def test_plain_documents(self):
        self.assertEqual({'a': [1, {'b': '[[[{{'}]},
                         safe_json.loads(b'{"a": [1, {"b": "[[[{{"}]}'))
        self.assertEqual([1], safe_json.loads('[1]'))

    def test_deep_nesting_is_one_line_refusal(self):
        deep = b'[' * (1024 * 1024) + b']' * (1024 * 1024)
        e = self.assertRaises(safe_json.JSONRefused, safe_json.loads, deep,
                              max_bytes=4 * 1024 * 1024)
        self.assertIn('deeper than 64', str(e))
        self.assertIsInstance(e, ValueError)

    def test_escaped_quotes_do_not_hide_brackets(self):
        doc = b'["\\"", ' + b'[' * 70 + b']' * 70 + b']'
        self.assertRaises(safe_json.JSONRefused, safe_json.loads, doc)
        ok = b'["\\"' + b'[' * 80 + b'"]'
        self.assertEqual(1, len(safe_json.loads(ok)))

    def test_size_bound(self):
        e = self.assertRaises(safe_json.JSONRefused, safe_json.loads,
                              b'"' + b'x' * 100 + b'"', max_bytes=50)
        self.assertIn('102 bytes', str(e))

    def test_malformed_is_value_error(self):
        self.assertRaises(ValueError, safe_json.loads, b'{')
