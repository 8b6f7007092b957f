"""oslo.i18n integration for nova-clear."""

import oslo_i18n

_translators = oslo_i18n.TranslatorFactory(domain='nova_clear')

_ = _translators.primary
