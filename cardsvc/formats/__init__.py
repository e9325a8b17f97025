"""Wire formats shared by the field (cards, terminals) and the central service: one home for each format."""
