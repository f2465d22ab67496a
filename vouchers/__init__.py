"""The currency: issuance, provider choice, presence codes and cards, redemption, reversal, expiry."""
