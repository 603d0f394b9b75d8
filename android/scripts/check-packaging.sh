#!/usr/bin/env bash
# Packaging consistency checks (Gradle wrapper, ABIs vs JNA, keep rules, sample API level, iOS
# privacy manifest and Package.swift): see check-packaging.py. No Android SDK or Xcode needed.
set -euo pipefail
exec python3 "$(dirname "${BASH_SOURCE[0]}")/check-packaging.py" "$@"
