"""The seed document's whole flow, end to end, through the test client."""


def test_register_book_checkout_flow(client, lot):
    body = {"username": "testuser", "email": "test@example.com", "password": "password123"}
    registered = client.post("/api/register", json=body)
    assert registered.status_code == 201
    token = registered.get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    vehicle = client.post("/api/vehicles", json={"plate_number": "KCB 123A"}, headers=headers)
    assert vehicle.status_code == 201
    booked = client.post(
        "/api/tickets",
        json={"vehicle_id": vehicle.get_json()["id"], "parking_spot_id": lot["spot_ids"][0]},
        headers=headers,
    )
    assert booked.status_code == 201
    assert booked.get_json()["message"] == "Spot booked"
    out = client.patch(f"/api/checkout/{booked.get_json()['ticket_id']}", headers=headers)
    assert out.status_code == 200
    assert out.get_json()["message"] == "Checked out"
