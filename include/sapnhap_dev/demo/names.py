"""Word lists for fake Vietnamese people, places and procedures of the demo world.

Every person the demo generates is made up from these lists; none is a real record.
Family names lean towards those common in the northern mountain provinces (Kinh, Tày,
Dao, H'Mông, Nùng), as in Hà Giang and Tuyên Quang.
"""

from __future__ import annotations

FAMILY_NAMES: tuple[str, ...] = (
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đỗ", "Bùi", "Đặng", "Ngô",
    "Nông", "Ma", "Lò", "Vàng", "Sùng", "Giàng", "Triệu", "Lý", "Bàn", "Hà",
    "Lương", "Lục", "Mã", "Quan", "Thào", "Hầu", "Chảo", "Phùng", "Đinh", "Dương",
)

MIDDLE_MALE: tuple[str, ...] = ("Văn", "Đức", "Minh", "Hữu", "Quang", "Xuân", "Tiến", "Công", "Thành", "Seo")
MIDDLE_FEMALE: tuple[str, ...] = ("Thị", "Thị", "Thị", "Ngọc", "Thu", "Thanh", "Minh", "Hồng", "Kim", "Mai")

GIVEN_MALE: tuple[str, ...] = (
    "An", "Bình", "Cường", "Dũng", "Đạt", "Giang", "Hải", "Hùng", "Huy", "Khánh",
    "Lâm", "Long", "Mạnh", "Nam", "Nghĩa", "Phong", "Phúc", "Quân", "Sơn", "Tài",
    "Thắng", "Toàn", "Trung", "Tuấn", "Việt", "Vinh", "Chứ", "Páo", "Sính", "Dìn",
)
GIVEN_FEMALE: tuple[str, ...] = (
    "Anh", "Chi", "Dung", "Duyên", "Giang", "Hà", "Hạnh", "Hằng", "Hoa", "Hương",
    "Lan", "Liên", "Linh", "Loan", "Mai", "Mây", "Nga", "Ngân", "Nhung", "Phương",
    "Quyên", "Thảo", "Thu", "Thủy", "Trang", "Tuyết", "Vân", "Yến", "Mỷ", "Dở",
)

# Hamlet name stems in the style of the region (Tày/Nùng place words). Invented combinations.
VILLAGE_STEMS: tuple[str, ...] = (
    "Nà Pồng", "Bản Mạ", "Khuổi Nhùng", "Nặm Ngần", "Pác Sáp", "Làng Vài", "Nà Lầu", "Tân Thành",
    "Cốc Phát", "Đồng Tâm", "Bản Dầm", "Khuổi Vài", "Nà Mỏ", "Thôm Ván", "Lũng Vài", "Bó Củng",
    "Xuân Hòa", "Tân Lập", "Hợp Thành", "Làng Thượng", "Phiêng Luông", "Nà Rà", "Cầu Trắng", "Đồng Mới",
)
# Hamlet names no split rule of the demo province should cover (used for 'split_no_rule').
UNCOVERED_VILLAGE_STEMS: tuple[str, ...] = ("Khuổi Nọi Mới", "Bản Tái Định Cư", "Nà Khà Dưới", "Lũng Phìn Trên")

STREETS: tuple[str, ...] = (
    "Nguyễn Trãi", "Trần Hưng Đạo", "Lê Lợi", "Quang Trung", "Hai Bà Trưng", "Nguyễn Du",
    "Lý Thường Kiệt", "Kim Đồng", "Võ Nguyên Giáp", "Tân Trào",
)

# (procedure code, procedure name, days allowed). Codes mimic the national catalogue's form.
PROCEDURES: tuple[tuple[str, str, int], ...] = (
    ("1.001193", "Đăng ký khai sinh", 1),
    ("1.000894", "Đăng ký kết hôn", 5),
    ("1.000656", "Đăng ký khai tử", 1),
    ("2.000908", "Chứng thực bản sao từ bản chính", 1),
    ("2.000815", "Chứng thực chữ ký", 1),
    ("1.004227", "Cấp giấy chứng nhận quyền sử dụng đất lần đầu", 30),
    ("1.003003", "Đăng ký biến động quyền sử dụng đất", 10),
    ("1.001612", "Cấp giấy phép xây dựng nhà ở riêng lẻ", 15),
    ("2.000286", "Xác nhận tình trạng hôn nhân", 3),
    ("1.002755", "Hỗ trợ hộ nghèo xây dựng nhà ở", 20),
    ("1.001758", "Trợ cấp xã hội hằng tháng", 15),
    ("2.001263", "Đăng ký hộ kinh doanh", 3),
)

STEP_NAMES: tuple[str, ...] = ("Tiếp nhận hồ sơ", "Chuyển xử lý", "Thẩm định", "Trình ký", "Trả kết quả")

RELATIONS: tuple[str, ...] = ("Vợ", "Chồng", "Con", "Con", "Con", "Bố", "Mẹ", "Cháu", "Con dâu")
