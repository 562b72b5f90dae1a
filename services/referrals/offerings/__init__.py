"""Pre-commitment offerings (community-supported production): see docs/offerings.md."""
