"""The guidance catalogue (指导目录) of purchasable service items, and the negative list (负面清单)."""
