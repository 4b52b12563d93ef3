"""API tokens: writes over HTTP need `Authorization: Bearer <token>`; reads stay open."""
