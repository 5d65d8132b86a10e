"""GET /api/test-db: database connectivity."""


def test_test_db_reports_a_working_connection(client):
    response = client.get("/api/test-db")
    assert response.status_code == 200
    assert response.get_json() == {"message": "Database connection successful"}


def test_test_db_is_public_and_json(client):
    response = client.get("/api/test-db")
    assert response.is_json
    assert "Authorization" not in response.request.headers
