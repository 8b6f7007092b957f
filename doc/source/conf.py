# Sphinx configuration of the nova-clear documentation.
project = 'nova-clear'
copyright = 'nova-clear developers'
extensions = ['oslo_config.sphinxext']
master_doc = 'index'
exclude_patterns = []
html_theme = 'alabaster'
